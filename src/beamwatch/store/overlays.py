"""Runtime overlays: changes to the config made while beamwatch runs (from Slack,
the CLI or the web), kept over the YAML file's values and across restarts.

Kinds: `subscriptions` and `quiet_hours` of a person (the value replaces the
file's), `oncall` of a team (a takeover: {"person", "start", "end"}, added to
the team's overrides). For one (kind, target) the newest row is in force: a
new one ends the one before (`ended_at`); a reset ends it and the file's value
applies again. Takeovers that ran out are simply no longer in force.

Rows are what people typed, validated by `api/people.py` before they are
written; applying them to a config is `api/people.effective`'s job."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, insert, select, update

from . import tables as t
from .store import Store

KINDS = ("subscriptions", "quiet_hours", "oncall")


@dataclass(frozen=True, slots=True)
class Overlay:
    id: int
    time: float
    kind: str
    target: str
    value: Any
    actor: str
    via: str


class OverlayStore:
    def __init__(self, store: Store):
        self.store = store

    def put(self, kind: str, target: str, value: Any, *, actor: str, via: str,
            now: float) -> Overlay:
        """Put `value` in force for (kind, target), ending the one before (one transaction)."""
        if kind not in KINDS:
            raise ValueError(f"unknown overlay kind '{kind}'")
        with self.store.engine.begin() as conn:
            self._end(conn, kind, target, actor, now)
            new_id = conn.execute(insert(t.overlays).values(
                time=now, kind=kind, target=target, value=value, actor=actor[:200],
                via=via[:20])).inserted_primary_key[0]
        return Overlay(new_id, now, kind, target, value, actor, via)

    def reset(self, kind: str, target: str, *, actor: str, now: float) -> int:
        """End what is in force for (kind, target): the file's value applies again."""
        with self.store.engine.begin() as conn:
            return self._end(conn, kind, target, actor, now)

    def _end(self, conn, kind: str, target: str, actor: str, now: float) -> int:
        c = t.overlays.c
        return conn.execute(update(t.overlays).where(and_(
            c.kind == kind, c.target == target, c.ended_at.is_(None))).values(
            ended_at=now, ended_by=actor[:200])).rowcount

    def active(self) -> list[Overlay]:
        """Every overlay in force, oldest first (takeovers that ran out included: the
        reader knows the time)."""
        c = t.overlays.c
        with self.store.engine.connect() as conn:
            rows = conn.execute(select(t.overlays).where(c.ended_at.is_(None))
                                .order_by(c.id)).mappings().all()
        return [Overlay(r["id"], r["time"], r["kind"], r["target"], r["value"], r["actor"],
                        r["via"]) for r in rows]
