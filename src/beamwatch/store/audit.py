"""The audit log: every change a person asked for from a front end (Slack, the
CLI, the web), who asked, from where, and whether it was done or refused.

Front ends append (through `api/audit.py`); nobody updates or deletes a row
but the retention purge. `history` and the beamline log read it beside the
transitions."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from sqlalchemy import delete, insert, select

from . import tables as t
from .store import Store

FIELD_MAX = {"actor": 200, "via": 20, "action": 40, "target": 300}


@dataclass(frozen=True, slots=True)
class AuditEntry:
    id: int
    time: float
    actor: str
    via: str
    action: str
    target: str
    detail: str
    outcome: str

    def to_json(self) -> dict:
        return asdict(self)


class AuditLog:
    def __init__(self, store: Store):
        self.store = store

    def record(self, *, time: float, actor: str, via: str, action: str, target: str = "",
               detail: str = "", outcome: str = "done") -> int:
        row = {"time": time, "actor": actor, "via": via, "action": action, "target": target,
               "detail": detail, "outcome": outcome}
        for key, limit in FIELD_MAX.items():  # user input: cut to fit, never refused
            row[key] = str(row[key])[:limit]
        with self.store.engine.begin() as conn:
            return conn.execute(insert(t.audit).values(**row)).inserted_primary_key[0]

    def entries(self, since: float | None = None, until: float | None = None,
                target: str | None = None, limit: int | None = None) -> list[AuditEntry]:
        """Oldest first; `target`: only entries about it; `limit`: the newest that many."""
        q = select(t.audit)
        if since is not None:
            q = q.where(t.audit.c.time >= since)
        if until is not None:
            q = q.where(t.audit.c.time < until)
        if target is not None:
            q = q.where(t.audit.c.target == target)
        q = q.order_by(t.audit.c.time.desc(), t.audit.c.id.desc())
        if limit is not None:
            q = q.limit(limit)
        with self.store.engine.connect() as conn:
            rows = conn.execute(q).mappings().all()
        return [AuditEntry(**dict(r)) for r in reversed(rows)]

    def purge(self, before: float) -> int:
        with self.store.engine.begin() as conn:
            return conn.execute(delete(t.audit).where(t.audit.c.time < before)).rowcount
