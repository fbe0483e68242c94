"""Past values of a check, for a forecast's first window after a start.

One small function, so that another source of the past (the EPICS Archiver
Appliance, for values from before beamwatch watched the check) can stand in
for the store: the engine takes any `PastValues`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

from ..store import Store
from ..store.errors import describe

log = logging.getLogger(__name__)

Point = tuple[float, float]
# (check id, since, until) -> (time, value) points, oldest first
PastValues = Callable[[str, float, float], list[Point]]


def stored_values(store: Store) -> PastValues:
    """The store's per-minute history: each minute's last value, at the minute's end."""

    def past(check_id: str, since: float, until: float) -> list[Point]:
        try:
            rows = store.history(check_id, since, until)
        except Exception as e:  # no past is no reason not to start: the trend fills up
            log.warning("no stored history for the forecast of %s: %s", check_id, describe(e))
            return []
        out = []
        for row in rows:
            value = row.get("vlast")
            if not row.get("count") or isinstance(value, bool):
                continue
            try:
                number = float(value)
            except (TypeError, ValueError):
                continue
            at = row["minute"] * 60 + 59.0
            if math.isfinite(number) and since <= at <= until:
                out.append((at, number))
        return out

    return past


RETRY_ARCHIVER = 60.0  # after an archiver failure, forecasts start without it this long


def with_archive(config, stored: PastValues,
                 monotonic: Callable[[], float] | None = None) -> PastValues:
    """The stored history, and before its first minute what the EPICS Archiver Appliance
    has (sources/archiver.py), for checks that have an archive. An archiver that fails
    is left alone for a minute: one timeout at a start, not one per forecast check."""
    import time

    from ..sources import archiver

    clock = monotonic or time.monotonic
    failed_at: list[float] = []

    def past(check_id: str, since: float, until: float) -> list[Point]:
        points = stored(check_id, since, until)
        first = points[0][0] if points else until
        if first - since < 120 or archiver.archive_of(config, check_id) is None:
            return points
        if failed_at and clock() - failed_at[-1] < RETRY_ARCHIVER:
            return points
        try:
            older = archiver.points(config, check_id, since, first - 60)
        except archiver.ArchiverError as e:
            failed_at.append(clock())
            log.warning("forecasts start without the archiver for a minute: %s", e)
            return points
        return older + points

    return past
