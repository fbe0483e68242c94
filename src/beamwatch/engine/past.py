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
