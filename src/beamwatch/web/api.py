"""The JSON API: the same questions and commands as the CLI and the Slack bot, over
HTTP, through the same service layer (`api/`). OpenAPI at /openapi.json.

Reads are open; changes need an identity (`auth.py`) and are audited with
`via: web`. Every error is `{"error": "…"}` with a 4xx: an unknown id is 404, a
request the service layer refuses (no reason, an end in the past, a matcher
matching nothing) is 400, a malformed body is 422; nothing is half done.
Endpoints are plain `def`s: FastAPI runs them in its worker threads, so store
reads never block the engine's loop (and an ack waiting for the engine holds one
of those threads, not one the engine needs).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from .. import timefmt
from ..api import audit, past, people, service
from ..api import noise as noise_api
from ..api.noise import ServiceError
from ..config.schema import Config
from ..store import LatestValue, Store
from ..store.outbox import Outbox

TEXT_MAX = 1000
ID_MAX = 2**62  # a row id: a bigger number is a 422, not an overflow in the database


@dataclass(frozen=True)
class Backend:
    """What the API needs of the running App."""

    config: Callable[[], Config]
    store: Store
    recent: Callable[[str], list[dict]]  # a check's minutes not stored yet
    clock: Callable[[], float] = time.time
    live: Callable[[str], LatestValue | None] | None = None  # the engine's latest values


class ApiError(BaseModel):
    error: str = Field(description="what is wrong, for a person to read")


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The error answers of a route, for the OpenAPI schema."""
    return {code: {"model": ApiError, "description": ERROR_TEXT[code]} for code in codes}


ERROR_TEXT = {400: "refused: the request cannot be done (said why)",
              401: "a change without an identity", 403: "a change the identity may not make",
              404: "unknown check, group or silence", 413: "body too large",
              422: "malformed body or parameters", 503: "not now (said why)"}


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SilenceIn(Body):
    matchers: list[Annotated[str, Field(min_length=1, max_length=200)]] = Field(
        min_length=1, max_length=20,
        description="check ids and/or NAME=VALUE, NAME!=VALUE, NAME=~REGEX, NAME!~REGEX")
    duration: str | None = Field(None, max_length=40, description="e.g. 2h, 1h30m")
    until: str | None = Field(None, max_length=40, description="e.g. 14:00, 2026-12-01T08:00")
    reason: str = Field(min_length=1, max_length=TEXT_MAX)


class ModeIn(Body):
    mode: str = Field(min_length=1, max_length=100)
    duration: str | None = Field(None, max_length=40)
    until: str | None = Field(None, max_length=40)
    reason: str = Field(min_length=1, max_length=TEXT_MAX)


class AckIn(Body):
    check: str = Field(min_length=1, max_length=300, description="a check id or an incident id")


def _since(text: str, tz: str, now: float) -> float:
    try:
        return timefmt.parse_when(text, tz, now)
    except ValueError as e:
        raise HTTPException(400, f"since: {e}") from None


def _known(cfg: Config, check_id: str) -> None:
    if not cfg.has_check(check_id):
        raise HTTPException(404, f"unknown check '{check_id[:100]}'"
                                 f"{noise_api._did_you_mean(check_id, cfg.check_ids)}")


def router(backend: Backend, who: Callable[..., str]) -> APIRouter:
    routes = APIRouter(prefix="/api", tags=["beamline"],
                       responses=errors(400, 401, 403, 404, 413, 422))
    # `= Depends(who)`, not an Annotated alias: annotations are strings here and a local
    # alias cannot be resolved by FastAPI (it would take `user` for a query parameter)

    @routes.get("/status", summary="Every check, worst first, with the mode")
    def status(group: Annotated[str | None, Query(max_length=100)] = None) -> JSONResponse:
        cfg = backend.config()
        rows = service.status(cfg, backend.store, backend.live)
        if group is not None:
            if group not in {c.group for c in cfg.checks}:
                raise HTTPException(404, f"no group '{group}'")
            rows = [r for r in rows if r.group == group]
        now = backend.clock()
        # JSON-safe already (json_value): JSONResponse skips FastAPI's walk over every check
        return JSONResponse({
            "beamline": cfg.beamline, "timezone": cfg.timezone, "time": now,
            "engine_running": service.engine_alive(backend.store, now),
            "instances": service.instances(backend.store, now),
            "mode": noise_api.mode_status(cfg, backend.store, now).to_json(cfg.timezone),
            "checks": [r.to_json() for r in rows]})

    @routes.get("/checks/{check_id}", summary="One check: its state and last transitions")
    def check(check_id: str) -> dict[str, Any]:
        cfg = backend.config()
        _known(cfg, check_id)
        [row] = [r for r in service.status(cfg, backend.store, backend.live) if r.id == check_id]
        c = cfg.check(check_id)
        since = backend.clock() - 86400
        return {**row.to_json(), "description": c.description, "labels": dict(c.labels),
                "depends_on": list(c.depends_on_ids),
                "history": service.history(backend.store, since, check_id, limit=50)}

    @routes.get("/checks/{check_id}/values", summary="Per-minute min/max/last values, "
                "from the archiver (if configured) before beamwatch's first minute")
    def values(check_id: str, since: Annotated[str, Query(max_length=40)] = "24h"
               ) -> JSONResponse:
        cfg = backend.config()
        _known(cfg, check_id)
        now = backend.clock()
        start = _since(since, cfg.timezone, now)
        # `archive` says what the archiver gave, or why it gave nothing (the stored
        # minutes are answered either way); plain data: JSONResponse skips the walk
        return JSONResponse(past.values(cfg, backend.store, check_id, start, now,
                                        backend.recent(check_id)).to_json())

    @routes.get("/history", summary="The beamline log: transitions and people's changes")
    def history(since: Annotated[str, Query(max_length=40)] = "24h",
                check: Annotated[str | None, Query(max_length=300)] = None,
                limit: Annotated[int | None, Query(ge=1, le=100_000)] = None) -> JSONResponse:
        cfg = backend.config()
        if check is not None:
            _known(cfg, check)
        start = _since(since, cfg.timezone, backend.clock())
        return JSONResponse(service.history(backend.store, start, check, limit))

    @routes.get("/timeline", summary="The log as bands per check, with modes, silences, "
                "notifications")
    def timeline(since: Annotated[str, Query(max_length=40)] = "24h") -> JSONResponse:
        cfg = backend.config()
        now = backend.clock()
        start = _since(since, cfg.timezone, now)
        if now - start > 8 * 86400:
            raise HTTPException(400, "since: at most 8 days back (the log keeps 7 by default)")
        # plain data already: JSONResponse skips FastAPI's walk over 10k checks' segments
        return JSONResponse(service.timeline(cfg, backend.store, start, now))

    @routes.get("/incidents", summary="Open incidents with who was told and how it went")
    def incidents() -> list[dict]:
        outbox = Outbox(backend.store)
        out = []
        for view in service.incidents(backend.store):
            trail = [{k: r[k] for k in ("kind", "receiver", "destination", "status",
                                        "created_at", "sent_at", "last_error")}
                     for r in outbox.rows(incident_id=view.id)]
            out.append({**view.to_json(), "notifications": trail})
        return out

    @routes.get("/silences", summary="Silences in force (all: also those that ended)")
    def silences(all: bool = False) -> list[dict]:  # noqa: A002 - the query parameter's name
        cfg = backend.config()
        views = noise_api.silences(cfg, backend.store, backend.clock(), include_expired=all)
        return [v.to_json(cfg.timezone) for v in views]

    @routes.post("/silences", status_code=201, summary="Silence alarms for a while")
    def add_silence(body: SilenceIn, user: str = Depends(who)) -> dict[str, Any]:
        cfg = backend.config()
        now = backend.clock()
        s = _service(lambda: noise_api.silence(
            cfg, backend.store, body.matchers, duration=body.duration, until=body.until,
            author=user, reason=body.reason, now=now, via="web"))
        return noise_api.view(cfg, s, now).to_json(cfg.timezone)

    @routes.delete("/silences/{silence_id}", summary="End a silence now")
    def end_silence(silence_id: Annotated[int, Path(ge=1, le=ID_MAX)],
                    user: str = Depends(who)) -> dict[str, Any]:
        cfg = backend.config()
        now = backend.clock()
        if noise_api._noise(backend.store).silence(str(silence_id)) is None:
            raise HTTPException(404, f"no silence {silence_id}")
        s = _service(lambda: noise_api.unsilence(backend.store, silence_id, user, now,
                                                 tz=cfg.timezone, via="web"))
        return noise_api.view(cfg, s, now).to_json(cfg.timezone)

    @routes.get("/mode", summary="The beamline mode, from where, and the override")
    def mode() -> dict[str, Any]:
        cfg = backend.config()
        return noise_api.mode_status(cfg, backend.store, backend.clock()).to_json(cfg.timezone)

    @routes.put("/mode", summary="Force the beamline mode until an end time")
    def set_mode(body: ModeIn, user: str = Depends(who)) -> dict[str, Any]:
        cfg = backend.config()
        now = backend.clock()
        _service(lambda: noise_api.set_mode(cfg, backend.store, body.mode, for_=body.duration,
                                            until=body.until, author=user, reason=body.reason,
                                            now=now, via="web"))
        return noise_api.mode_status(cfg, backend.store, now).to_json(cfg.timezone)

    @routes.delete("/mode", summary="End the mode override")
    def clear_mode(user: str = Depends(who)) -> dict[str, Any]:
        cfg = backend.config()
        now = backend.clock()
        noise_api.clear_mode(backend.store, user, now, via="web")
        return noise_api.mode_status(cfg, backend.store, now).to_json(cfg.timezone)

    @routes.post("/acks", summary="Acknowledge a check's alarm (or an incident's root)")
    def ack(body: AckIn, user: str = Depends(who)) -> dict[str, Any]:
        cfg = backend.config()
        check_id = service.ack_target(cfg, backend.store, body.check)
        _known(cfg, check_id)
        result = service.acknowledge(cfg, backend.store, check_id, user, via="web")
        return {"ok": result.ok, "message": result.message, "queued": result.queued,
                "engine_running": result.engine_running}

    @routes.get("/oncall", summary="Who is on call for each team, until when")
    def oncall() -> list[dict]:
        cfg = backend.config()
        return [a.to_json(cfg.timezone) for a in people.oncall(cfg, backend.store,
                                                                backend.clock())]

    @routes.get("/audit", summary="Every change people made, from any front end")
    def audit_log(since: Annotated[str, Query(max_length=40)] = "24h",
                  limit: Annotated[int | None, Query(ge=1, le=100_000)] = None) -> JSONResponse:
        cfg = backend.config()
        start = _since(since, cfg.timezone, backend.clock())
        return JSONResponse([e.to_json() for e in audit.entries(backend.store, start,
                                                                 limit=limit)])

    return routes


def _service(call: Callable):
    try:
        return call()
    except ServiceError as e:
        raise HTTPException(400, e.message) from None
