"""The running engine's "who is on call now", written into its store.

On-call comes from the beamline's config (rotas, iCal feeds, overrides) and its
runtime overlays (takeovers from Slack or the web): a facility view reading many
beamlines' stores has none of these. So each engine writes its answer, per team,
into its own store: when it changes (seen within CHECK_EVERY) and at least every
REFRESH, so a reader can tell a fresh answer from one a dead engine left behind.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from ..routing.oncall import OnCallResolver

CHECK_EVERY = 15.0  # seconds between looks at the rotas
REFRESH = 60.0  # written at least this often, changed or not


def oncall_rows(resolver: OnCallResolver, now: float) -> list[dict]:
    """One row per team that can have someone on call (rota, iCal or overrides)."""
    people = resolver.config.people
    rows = []
    for who in resolver.everyone(now, with_until=False):
        person = people.get(who.person) if who.person else None
        rows.append({"team": who.team, "person": who.person,
                     "name": (person.name if person else None) or who.person,
                     "since": who.since, "until": who.until, "reason": who.reason[:2000]})
    return rows


class OnCallSnapshot:
    def __init__(self) -> None:
        self._written: list[dict] | None = None
        self._at: float | None = None

    async def publish(self, resolver: OnCallResolver, now: float,
                      write: Callable[..., Awaitable[Any]], save: Callable) -> bool:
        """Write the snapshot through `write(save, rows, now)` (the engine's writer
        thread) if it changed or is due; True if written."""
        rows = oncall_rows(resolver, now)
        if rows == self._written and self._at is not None and now - self._at < REFRESH:
            return False
        await write(save, rows, now)
        self._written, self._at = rows, now
        return True
