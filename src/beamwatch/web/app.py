"""The one ASGI app every HTTP front end mounts on."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from . import health, heartbeat
from . import slack_events as slack_events_


def create_app(*, receive_beat: heartbeat.ReceiveBeat, verdict: health.Verdict,
               slack_events: slack_events_.Handler | None = None) -> FastAPI:
    """The app, talking to the running engine only through what it is given:
    `receive_beat(check_id, token, message) -> Beat` (the heartbeat source),
    `verdict() -> (healthy, why)` (the self-monitor's judgement) and, with the Slack
    bot in HTTP mode, its request handler (`POST /slack/events`)."""
    app = FastAPI(title="beamwatch", docs_url=None, redoc_url=None, openapi_url=None)
    app.include_router(heartbeat.router(receive_beat))
    app.include_router(health.router(verdict))
    if slack_events is not None:
        app.include_router(slack_events_.router(slack_events))

    @app.exception_handler(StarletteHTTPException)
    async def _as_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # every error of this API has the same shape: {"error": "..."}
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    return app
