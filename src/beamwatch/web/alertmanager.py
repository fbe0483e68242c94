"""`POST /api/alertmanager`: Prometheus Alertmanager's webhook (payload version 4) in;
each alert feeds an `alert:` check (sources/alertmanager.py keeps them).

When `web.tokens` is set, the request must carry one of them as a bearer token
(alertmanager.yml: `http_config: {authorization: {credentials: TOKEN}}`); without
tokens the endpoint is as open as the interface it listens on. Answers: 200 with what
was taken (the alerts' checks, the alerts no check takes); 401 missing or wrong token
(nothing recorded); 413 body too large; 422 not a version 4 payload, saying what is
wrong; 503 the alerts could not be stored (Alertmanager sends them again) or `alert:`
checks were added by a reload (restart beamwatch)."""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from ..config.schema import WebConfig
from ..sources.alertmanager import Received, WebhookIn

log = logging.getLogger("beamwatch.web")

BODY_MAX = 1024 * 1024  # bytes: a group of up to ALERTS_MAX alerts


class NotStarted(Exception):
    """`alert:` checks added by a reload: their source is built at the next start."""


ReceiveAlerts = Callable[[WebhookIn], Awaitable[Received]]


class AlertsTaken(BaseModel):
    alerts: int
    checks: list[str]
    unmatched: list[str]


def router(receive: ReceiveAlerts, web: Callable[[], WebConfig]) -> APIRouter:
    from .api import errors  # the one error shape of the API

    routes = APIRouter(tags=["alertmanager"], responses=errors(401, 413, 422, 503))

    def allowed(request: Request) -> None:
        tokens = web().tokens
        if not tokens:
            return
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and any(
                hmac.compare_digest(s.get().encode(), given.strip().encode())
                for s in tokens.values()):
            return
        raise HTTPException(401, "alerts need Authorization: Bearer TOKEN, a token of "
                                 "web.tokens (alertmanager.yml: http_config.authorization)",
                            headers={"WWW-Authenticate": "Bearer"})

    @routes.post("/api/alertmanager", summary="Alerts from Prometheus Alertmanager's webhook",
                 response_model=AlertsTaken, dependencies=[Depends(allowed)])
    async def alertmanager(payload: WebhookIn) -> JSONResponse:
        try:
            taken = await receive(payload)
        except NotStarted:
            return _error(503, "alert: checks were added by a reload: restart beamwatch to "
                               "take alerts")
        except Exception as e:  # noqa: BLE001 - the store: Alertmanager retries a 5xx
            log.error("alerts from Alertmanager not stored: %s", e)
            return _error(503, "the alerts could not be stored; Alertmanager will send "
                               "them again")
        return JSONResponse({"alerts": taken.alerts, "checks": taken.checks,
                             "unmatched": taken.unmatched[:100]})

    return routes


def _error(status: int, text: str) -> JSONResponse:
    return JSONResponse({"error": text}, status_code=status)
