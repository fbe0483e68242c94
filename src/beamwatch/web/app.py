"""The one ASGI app every HTTP front end mounts on."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..config.schema import WebConfig
from . import alertmanager, api, auth, events, health, heartbeat, metrics, pages
from . import slack_events as slack_events_

BODY_MAX = 64 * 1024  # bytes a request body may have (the heartbeat router keeps 4 KB)


def create_app(*, receive_beat: heartbeat.ReceiveBeat, verdict: health.Verdict,
               slack_events: slack_events_.Handler | None = None,
               backend: api.Backend | None = None,
               web: Callable[[], WebConfig] | None = None,
               snapshot: Callable[[], metrics.Snapshot] | None = None,
               leader: Callable[[], str | None] = lambda: None,
               receive_alerts: alertmanager.ReceiveAlerts | None = None) -> FastAPI:
    """The app, talking to the running engine only through what it is given:
    `receive_beat(check_id, token, message) -> Beat` (the heartbeat source),
    `verdict() -> (healthy, why)` (the self-monitor's judgement), with the Slack
    bot in HTTP mode its request handler (`POST /slack/events`), the API's
    `backend` with the `web` settings (who may change things), the metrics'
    `snapshot`, `receive_alerts(payload)` (the Alertmanager source), and on an HA
    pair's standby the `leader()`'s web address."""
    app = FastAPI(title="beamwatch", description="The beamline's alarms, log, silences "
                  "and mode. Reading is open; a change needs an identity (web.tokens or "
                  "the trusted proxy's header).", docs_url=None, redoc_url=None,
                  openapi_url="/openapi.json" if backend is not None else None)
    app.include_router(heartbeat.router(receive_beat, leader))
    app.include_router(health.router(verdict))
    if slack_events is not None:
        app.include_router(slack_events_.router(slack_events))
    if backend is not None:
        settings = web or WebConfig
        app.include_router(api.router(backend, auth.identity(settings)))
        app.include_router(events.router(events.EventHub(backend.store, backend.clock)))
        app.include_router(pages.router(backend.config))
        app.mount("/static", pages.static_files(), name="static")
    if snapshot is not None:
        app.include_router(metrics.router(snapshot))
    if receive_alerts is not None:
        app.include_router(alertmanager.router(receive_alerts, web or WebConfig))

    @app.middleware("http")
    async def _limit_body(request: Request, call_next):
        declared = request.headers.get("content-length", "")
        limit = alertmanager.BODY_MAX if request.url.path == "/api/alertmanager" else BODY_MAX
        if declared.isdigit() and int(declared) > limit:
            return JSONResponse({"error": f"body larger than {limit} bytes"},
                                status_code=413)
        return await call_next(request)

    @app.exception_handler(StarletteHTTPException)
    async def _as_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # every error of this API has the same shape: {"error": "..."}
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', '')}"
                    for e in exc.errors()[:10]]
        return JSONResponse({"error": "; ".join(problems) or "invalid request"},
                            status_code=422)

    return app
