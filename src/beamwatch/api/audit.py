"""Who changed what, from which front end: the service side of the audit log.

Every change a person makes through the service layer (ack, silence, mode,
subscriptions, quiet hours, on-call) is recorded here by the function that
makes it, so no front end can forget; a front end records what it refused
(`refused`), so an attempt without the right is on record too."""

from __future__ import annotations

import logging
import time

from ..store import Store
from ..store.audit import AuditEntry, AuditLog

log = logging.getLogger("beamwatch.audit")

FRONT_ENDS = ("cli", "slack", "web")


def record(store: Store, actor: str, via: str, action: str, target: str = "",
           detail: str = "", outcome: str = "done", now: float | None = None) -> None:
    """Append one entry. The change it describes is already made: a failure to write the
    audit entry is logged, never undoes or blocks it."""
    now = time.time() if now is None else now
    try:
        AuditLog(store).record(time=now, actor=actor, via=via, action=action, target=target,
                               detail=detail, outcome=outcome)
    except Exception as e:  # noqa: BLE001 - the store is away: say so, the change stands
        log.error("audit entry not stored (%s by %s via %s on %s): %s", action, actor, via,
                  target, e)


def refused(store: Store, actor: str, via: str, action: str, target: str, why: str,
            now: float | None = None) -> None:
    record(store, actor, via, action, target, why, outcome="refused", now=now)


def entries(store: Store, since: float | None = None, until: float | None = None,
            target: str | None = None, limit: int | None = None) -> list[AuditEntry]:
    return AuditLog(store).entries(since, until, target, limit)


def sentence(e: AuditEntry) -> str:
    """'jdoe (slack) silence fe-vacuum: for 2h, replacing the gauge' / '… refused: why'."""
    what = f"{e.action} {e.target}".strip()
    tail = f": {e.detail}" if e.detail else ""
    if e.outcome != "done":
        tail = f" [{e.outcome}]{tail}"
    return f"{e.actor} ({e.via}) {what}{tail}"
