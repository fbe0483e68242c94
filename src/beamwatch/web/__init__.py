"""The HTTP front end: one ASGI app (FastAPI) that `beamwatch run` serves on
`web.listen` (uvicorn, in the engine's own event loop).

`app.create_app` builds it from small callables the composition passes in, one
router per concern: `heartbeat.py` (heartbeats in), `health.py` (`/healthz`).
Later front ends (the Slack bot's events, Alertmanager input, the dashboard) add
their routers to the same app. `server.py` binds the socket and runs uvicorn.
"""

from .app import create_app

__all__ = ["create_app"]
