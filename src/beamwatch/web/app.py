"""The one ASGI app every HTTP front end mounts on."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from . import health, heartbeat


def create_app(*, receive_beat: heartbeat.ReceiveBeat, verdict: health.Verdict) -> FastAPI:
    """The app, talking to the running engine only through what it is given:
    `receive_beat(check_id, token, message) -> Beat` (the heartbeat source) and
    `verdict() -> (healthy, why)` (the self-monitor's judgement)."""
    app = FastAPI(title="beamwatch", docs_url=None, redoc_url=None, openapi_url=None)
    app.include_router(heartbeat.router(receive_beat))
    app.include_router(health.router(verdict))

    @app.exception_handler(StarletteHTTPException)
    async def _as_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # every error of this API has the same shape: {"error": "..."}
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    return app
