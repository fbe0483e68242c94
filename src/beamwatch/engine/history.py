"""Per-minute downsampling of samples for plots, reports and replay.

Kept in memory for the current minute and written once the minute is over,
so a 10 Hz PV costs one row a minute, not 600. A row holds the values
(min, max, last, count of samples with a value), the connection (connected at
the end of the minute, first lost and last back in it) and the record's own
EPICS severity (the worst in the minute and when it was first reached, and
the last): data, so that replay never has to read them back out of messages.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass
from typing import Any

from ..model import Sample, Severity

MAX_UNSTORED = 200_000  # check-minutes kept while the store is away
_INFINITE = (math.inf, -math.inf)


@dataclass(slots=True)
class _Minute:
    minute: int
    connected: bool  # at the start of the minute, then as it goes
    vmin: float | None = None
    vmax: float | None = None
    vlast: Any = None
    count: int = 0  # samples with a value (connected ones)
    lost_at: float | None = None  # the first disconnection in the minute
    back_at: float | None = None  # the last reconnection in the minute
    record_severity: int | None = None  # the worst record severity in the minute
    record_severity_at: float | None = None  # when it was first reached
    record_severity_last: int | None = None

    def add(self, sample: Sample, now: float) -> None:
        # on the hot path (every sample of every check): inlined, no helper calls
        if not sample.connected:
            if self.connected and self.lost_at is None:
                self.lost_at = now
            self.connected = False
            return
        if not self.connected:
            self.back_at = now
        self.connected = True
        value = sample.value
        if type(value) is float or type(value) is int:
            if value == value and value not in _INFINITE:
                self.vmin = value if self.vmin is None or value < self.vmin else self.vmin
                self.vmax = value if self.vmax is None or value > self.vmax else self.vmax
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and \
                math.isfinite(value):  # numpy scalars and other int/float subclasses
            self.vmin = value if self.vmin is None else min(self.vmin, value)
            self.vmax = value if self.vmax is None else max(self.vmax, value)
        self.vlast = value
        self.count += 1
        level = sample.severity
        if type(level) is not Severity:
            level = record_level(level)
        if self.record_severity is None or level > self.record_severity:
            self.record_severity, self.record_severity_at = int(level), now
        self.record_severity_last = level

    def as_row(self, check_id: str) -> dict:
        return {"check_id": check_id, "minute": self.minute, "vmin": self.vmin,
                "vmax": self.vmax, "vlast": self.vlast, "count": self.count,
                "connected": self.connected, "lost_at": self.lost_at,
                "back_at": self.back_at, "record_severity": self.record_severity,
                "record_severity_at": self.record_severity_at,
                "record_severity_last": None if self.record_severity_last is None
                else int(self.record_severity_last)}


def record_level(raw: Any) -> int:
    """The record severity as stored: 0..3; one EPICS does not define counts as INVALID,
    as the check judges it."""
    if isinstance(raw, int) and not isinstance(raw, bool) and raw >= 0:
        return min(int(raw), int(Severity.INVALID))
    return int(Severity.INVALID)


class MinuteHistory:
    def __init__(self) -> None:
        self._open: dict[str, _Minute] = {}
        self._closed: list[dict] = []
        # connected at the end of each check's last row: a minute with no sample at all
        # (Channel Access posts nothing while a PV is away) keeps the state it started in
        self._connected: dict[str, bool] = {}
        self._scanned = -1  # the minute `take_sliced` last looked for minutes that are over

    def add(self, check_id: str, sample: Sample, now: float) -> None:
        minute = int(now // 60)
        row = self._open.get(check_id)
        if row is not None and row.minute != minute:
            self._close(check_id, row)
            row = None
        if row is None:
            row = self._open[check_id] = _Minute(minute, self._connected.get(check_id, True))
        row.add(sample, now)

    def take(self, now: float, everything: bool = False) -> list[dict]:
        """Rows of minutes that are over (all open ones too with `everything`, at stop)."""
        self._close_over(list(self._open.items()), int(now // 60), everything)
        out, self._closed = self._closed, []
        return out

    async def take_sliced(self, now: float, everything: bool = False,
                          step: int = 10_000) -> list[dict]:
        """`take`, yielding to the event loop every `step` checks: closing 100k minutes
        at once held the loop for most of a second (an HA lease renews on that loop).
        Between the minute boundaries there is nothing to close and nothing is scanned."""
        minute = int(now // 60)
        if everything or minute > self._scanned:
            rows = list(self._open.items())
            for start in range(0, len(rows), step):
                if start:
                    await asyncio.sleep(0)
                self._close_over(rows[start:start + step], minute, everything)
            self._scanned = minute  # only once all is closed (a cancel scans again)
        out, self._closed = self._closed, []
        return out

    def _close_over(self, rows: list[tuple[str, _Minute]], minute: int,
                    everything: bool) -> None:
        for check_id, row in rows:
            # still open: `add` may have closed and replaced it while take_sliced yielded
            if self._open.get(check_id) is row and (everything or row.minute < minute):
                self._close(check_id, row)
                del self._open[check_id]

    def unstored(self, check_id: str) -> list[dict]:
        """The check's minutes not in the store yet, the current one included: what a
        plot of the last hours adds to the stored rows."""
        rows = [r for r in self._closed if r["check_id"] == check_id]
        if (row := self._open.get(check_id)) is not None:
            rows.append(row.as_row(check_id))
        return rows

    def put_back(self, rows: list[dict]) -> None:
        """Rows `take` gave out that could not be stored: offered again next time, up to
        MAX_UNSTORED rows (a long store outage loses the oldest minutes, not memory)."""
        self._closed[:0] = rows
        del self._closed[:-MAX_UNSTORED]

    def _close(self, check_id: str, row: _Minute) -> None:
        self._closed.append(row.as_row(check_id))
        self._connected[check_id] = row.connected
