"""Beamline mode changes, announced: the ModeTracker's records become outbox rows.

A mode change (mode PV, a manual override, the schedule, an override running
out) is logged by the app (`NoiseStore.log_mode_changes`); `ModeNotes.rows`
turns the same records into `kind: mode` outbox rows, one per recipient that
the routes with `match: {kind: mode}` name (`Router.route_mode`), for the
engine's next batch (`Engine.queue_rows`): stored before they are sent.

Only real changes are announced (`old != new`): an override that leaves the
mode as it was, a mode PV problem (`ModeProblem`) are logged, not announced.
A person held by quiet hours is not told later: by morning the mode may have
changed again, and `beamwatch mode` shows the log.

Restarts: the tracker starts from the default mode and the mode PV's first value
(or the stored override) "changes" it again, at a new time. `last` — the mode last
announced, restored by `resume` from the newest `mode` row in the outbox (else the
newest logged change) — keeps that re-derived change from being announced twice.
The dedup key (change time, new mode, destination) makes queuing the same record
twice harmless.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from sqlalchemy import select

from ..config.schema import Config
from ..engine.modes import ModeTracker
from ..model import Severity
from ..model.message import Message
from ..model.modes import ModeChange, ModeRecord, ModeSource
from ..routing.router import Router
from ..store import Store
from ..store import tables as t

log = logging.getLogger("beamwatch")

DEFAULT_EXPIRE = 3600.0  # a destination that is not a named channel (a person's address)


class ModeNotes:
    """Decides which mode changes are news and builds their outbox rows."""

    def __init__(self) -> None:
        self.last: str | None = None  # the mode last announced (None: nothing yet)

    def resume(self, store: Store) -> str | None:
        """At start (on the writer thread): the mode last announced, from the store."""
        n, c = t.notifications.c, t.mode_changes.c
        with store.engine.connect() as conn:
            row = conn.execute(select(n.message).where(n.kind == "mode")
                               .order_by(n.created_at.desc(), n.id.desc()).limit(1)).first()
            if row is not None:
                self.last = (row.message or {}).get("mode")
            else:
                self.last = conn.execute(select(c.new).order_by(c.time.desc(), c.id.desc())
                                         .limit(1)).scalar_one_or_none()
        return self.last

    def rows(self, records: Iterable[ModeRecord], router: Router, config: Config,
             tracker: ModeTracker, now: float) -> list[dict]:
        """Outbox rows for the changes among `records` that are news."""
        out: list[dict] = []
        for rec in records:
            if not isinstance(rec, ModeChange) or not rec.changed or rec.new == self.last:
                continue
            self.last = rec.new
            try:
                out += self._announce(rec, router, config, tracker, now)
            except Exception:  # never let telling people stop the mode from changing
                log.exception("announcing %s failed", rec)
        return out

    def _announce(self, rec: ModeChange, router: Router, config: Config,
                  tracker: ModeTracker, now: float) -> list[dict]:
        result = router.route_mode(rec.old, rec.new, rec.time)
        message = Message(
            kind="mode", beamline=config.beamline, title=f"mode {rec.old} -> {rec.new}",
            severity=Severity.OK, time=rec.time, mode=rec.new, previous_mode=rec.old,
            mode_source=str(rec.source), actor=rec.author, text=rec.reason,
            until=_until(rec, tracker), link=config.web.url, timezone=config.timezone,
        ).to_dict()
        rows = []
        for rcpt in result.recipients:
            names = rcpt.notifier_names
            if not names:
                continue
            rows.append({
                "dedup_key": f"mode/{rec.time:.3f}/{rec.new}/{names[0]}", "kind": "mode",
                "receiver": rcpt.key, "destination": names[0],
                "route": "; ".join(rcpt.via)[:200], "created_at": now,
                "message": {**message, "fallbacks": list(names[1:])},
                "expires_at": now + _expire(config, names[0]),
            })
        for held in result.held:
            log.info("mode change %s -> %s not told to %s: %s", rec.old, rec.new, held.name,
                     held.why)
        return rows


def _until(rec: ModeChange, tracker: ModeTracker) -> float | None:
    """When the new mode ends by itself, if that is known: the override's end, or the
    end of the scheduled window."""
    ov = tracker.override
    if rec.source == ModeSource.OVERRIDE and ov is not None and ov.mode == rec.new:
        return ov.until
    if rec.source == ModeSource.SCHEDULE:
        for s in tracker.schedule:
            span = s.window.occurrence(rec.time)
            if s.mode == rec.new and span is not None:
                return span[1]
    return None


def _expire(config: Config, destination: str) -> float:
    kind, _, name = destination.partition(":")
    channel = config.channels.get(name) if kind == "channel" else None
    return channel.expire if channel else DEFAULT_EXPIRE
