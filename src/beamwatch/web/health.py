"""`GET /healthz`: 200 while beamwatch does its job, else 503 saying why.

The judgement is the self-monitor's (`health.Health.verdict`, the same one that
decides the outbound heartbeat): the engine ticks on time, the store is writable,
the outbox moves and the event loop is on time."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import APIRouter
from fastapi.responses import JSONResponse

Verdict = Callable[[], tuple[bool, str]]


def router(verdict: Verdict) -> APIRouter:
    routes = APIRouter(tags=["operations"])

    @routes.get("/healthz", summary="200 while beamwatch does its job, else 503 saying why",
                responses={503: {"description": "unhealthy, with the reason"}})
    def healthz() -> JSONResponse:
        healthy, why = verdict()
        return JSONResponse({"status": "ok" if healthy else "unhealthy", "reason": why},
                            status_code=200 if healthy else 503)

    return routes
