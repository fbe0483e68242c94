"""Per-minute downsampling of values (min, max, last, count) for plots and reports.

Kept in memory for the current minute and written once the minute is over,
so a 10 Hz PV costs one row a minute, not 600.
"""

from __future__ import annotations

import math
from typing import Any

MAX_UNSTORED = 200_000  # check-minutes kept while the store is away


class MinuteHistory:
    def __init__(self) -> None:
        self._open: dict[str, list] = {}  # check_id -> [minute, vmin, vmax, last, count]
        self._closed: list[dict] = []

    def add(self, check_id: str, value: Any, now: float) -> None:
        minute = int(now // 60)
        row = self._open.get(check_id)
        if row is not None and row[0] != minute:
            self._closed.append(_as_dict(check_id, row))
            row = None
        number = value if isinstance(value, (int, float)) and not isinstance(value, bool) else None
        if number is not None and not math.isfinite(number):
            number = None
        if row is None:
            self._open[check_id] = [minute, number, number, value, 1]
            return
        if number is not None:
            row[1] = number if row[1] is None else min(row[1], number)
            row[2] = number if row[2] is None else max(row[2], number)
        row[3] = value
        row[4] += 1

    def take(self, now: float, everything: bool = False) -> list[dict]:
        """Rows of minutes that are over (all open ones too with `everything`, at stop)."""
        minute = int(now // 60)
        for check_id, row in list(self._open.items()):
            if everything or row[0] < minute:
                self._closed.append(_as_dict(check_id, row))
                del self._open[check_id]
        out, self._closed = self._closed, []
        return out


    def put_back(self, rows: list[dict]) -> None:
        """Rows `take` gave out that could not be stored: offered again next time, up to
        MAX_UNSTORED rows (a long store outage loses the oldest minutes, not memory)."""
        self._closed[:0] = rows
        del self._closed[:-MAX_UNSTORED]


def _as_dict(check_id: str, row: list) -> dict:
    return {"check_id": check_id, "minute": row[0], "vmin": row[1], "vmax": row[2],
            "vlast": row[3], "count": row[4]}
