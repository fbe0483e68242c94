"""`POST /api/heartbeat/{check_id}`: heartbeats in (sources/heartbeat.py keeps them).

`Authorization: Bearer TOKEN` when the check has a `token:`. An optional body (JSON
or text, at most MAX_BODY bytes) is kept as the beat's message, shown with the
check's state. Answers: 200 accepted; 400 not a heartbeat check; 401 missing or
wrong token (nothing recorded); 404 unknown check; 413 body too large; 503 a
heartbeat check added by a reload (beamwatch needs a restart to take its beats).
On an HA pair's standby a beat is noted (for a takeover) and answered 307 with the
leader's address, so a client that follows redirects (curl -L) reaches the leader."""

from __future__ import annotations

import logging
from collections.abc import Callable

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from ..sources.heartbeat import Beat

log = logging.getLogger("beamwatch.web")

MAX_BODY = 4096  # bytes: a status line or a small JSON document, not a log file

ReceiveBeat = Callable[[str, str | None, str | None], Beat]

_ANSWERS: dict[Beat, tuple[int, str]] = {
    Beat.UNKNOWN: (404, "unknown check '{id}'"),
    Beat.NOT_HEARTBEAT: (400, "check '{id}' is not a heartbeat check (it has no heartbeat:)"),
    Beat.BAD_TOKEN: (401, "missing or wrong bearer token for check '{id}'"),
    Beat.NOT_STARTED: (503, "check '{id}' was added by a reload: restart beamwatch to "
                            "take its heartbeats"),
}


class BodyTooLarge(Exception):
    pass


def router(receive: ReceiveBeat, leader: Callable[[], str | None] = lambda: None
           ) -> APIRouter:
    """`leader()`: the leading instance's web address when this one stands by."""
    from .api import errors  # the one error shape of the API

    routes = APIRouter(tags=["heartbeats"], responses={
        **errors(400, 401, 404, 413, 422, 503),
        307: {"description": "a standby: noted, and sent on to the leader"}})

    @routes.post("/api/heartbeat/{check_id}", summary="A beat of a heartbeat check")
    async def heartbeat(check_id: str, request: Request) -> JSONResponse:
        try:
            body = await _body(request)
        except BodyTooLarge:
            return _error(413, f"body larger than {MAX_BODY} bytes")
        outcome = receive(check_id, _bearer(request.headers.get("authorization")),
                          _message(body))
        if outcome is Beat.ACCEPTED:
            elsewhere = leader()
            if elsewhere:
                return JSONResponse({"check": check_id, "status": "standby", "leader": elsewhere},
                                    status_code=307, headers={
                                        "Location": f"{elsewhere}/api/heartbeat/{check_id}"})
            return JSONResponse({"check": check_id, "status": "accepted"})
        status, text = _ANSWERS[outcome]
        shown = check_id[:100]
        log.info("heartbeat refused (%d): %s", status, text.format(id=shown))
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        return _error(status, text.format(id=shown), headers)

    return routes


async def _body(request: Request) -> bytes:
    """The body, read no further than MAX_BODY (a declared length is refused first)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY:
        raise BodyTooLarge
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            raise BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def _bearer(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


def _message(body: bytes) -> str | None:
    """The body as text (JSON is kept as sent); None when empty."""
    text = body.decode("utf-8", errors="replace").strip()
    return " ".join(text.split()) or None  # one line in status and pages


def _error(status: int, text: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": text}, status_code=status, headers=headers)
