"""Flap detection: a check that keeps changing state is reported once, then muted.

Icinga's method (Nagios before it): look at the last 21 check results, i.e.
20 chances to change state; weight each chance from 0.8 (oldest) to 1.2
(newest) so that recent behaviour counts more; the weighted share of chances
that were changes is the *percent state change*. Flapping starts above the
high threshold (30 %) and stops below the low one (25 %); the gap is
hysteresis, so the verdict itself does not flap.

Icinga checks run on a fixed interval, which gives "the last 21 results" a
duration. Our checks are event-driven (a PV may update at 10 Hz, or once an
hour), so a "result" here is a time slot of `interval` seconds: a slot
counts as a change if the severity changed at least once in it. The 20 slots
(default 20 × 10 s = 200 s) are the window. This makes the verdict
independent of how often a PV happens to update, and lets a flapping check
settle with no updates at all (`tick`).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

from ..model import MuteReason, Severity
from .mute import Alert


@dataclass(frozen=True, slots=True)
class FlapEvent:
    """A check started (`flapping=True`) or stopped flapping. Each is reported once."""

    check_id: str
    time: float
    flapping: bool
    percent: float

    @property
    def started(self) -> bool:
        return self.flapping

    @property
    def stopped(self) -> bool:
        return not self.flapping

    def __str__(self) -> str:
        what = "started" if self.flapping else "stopped"
        return f"{self.check_id} {what} flapping ({self.percent:.0f}% state change)"


@dataclass
class _History:
    last: Severity | None = None
    changed_slots: deque[int] = field(default_factory=deque)  # ascending, unique
    flapping: bool = False
    percent: float = 0.0


class FlapDetector:
    """Per-check weighted percent state change over `slots` slots of `interval` s.

    Feed it with `record` on every severity change of a check (calling it with
    an unchanged severity is harmless), and call `tick` now and then so that a
    check that went quiet is seen to settle.
    """

    def __init__(self, *, interval: float = 10.0, slots: int = 20, low: float = 25.0,
                 high: float = 30.0):
        if not 0 <= low <= high <= 100:
            raise ValueError("flapping thresholds need 0 <= low <= high <= 100")
        if interval <= 0 or slots < 2:
            raise ValueError("flapping needs interval > 0 and at least 2 slots")
        self.interval = interval
        self.slots = slots
        self.low = low
        self.high = high
        self._weights = [0.8 + 0.4 * i / (slots - 1) for i in range(slots)]
        self._total = sum(self._weights)
        self._checks: dict[str, _History] = {}
        # checks with changes in the window or flapping: the only ones `tick` must judge
        # (a 100k-check start records every check once)
        self._active: set[str] = set()

    @property
    def window(self) -> float:
        """Seconds of history the verdict looks at."""
        return self.interval * self.slots

    def _slot(self, now: float) -> int:
        return math.floor(now / self.interval)

    def percent(self, check_id: str, now: float) -> float:
        """Weighted percent state change of `check_id` over the window ending at `now`."""
        h = self._checks.get(check_id)
        return 0.0 if h is None else self._percent(h, self._slot(now))

    def _percent(self, h: _History, current: int) -> float:
        oldest = current - self.slots + 1
        while h.changed_slots and h.changed_slots[0] < oldest:
            h.changed_slots.popleft()
        weighted = sum(self._weights[s - oldest] for s in h.changed_slots if s <= current)
        return 100.0 * weighted / self._total

    def is_flapping(self, check_id: str) -> bool:
        h = self._checks.get(check_id)
        return h is not None and h.flapping

    def flapping(self) -> list[str]:
        return sorted(c for c, h in self._checks.items() if h.flapping)

    def record(self, check_id: str, severity: Severity, now: float) -> FlapEvent | None:
        """The check's severity is `severity` at `now`: a start or stop event, or None."""
        h = self._checks.setdefault(check_id, _History())
        if h.last is not None and severity != h.last:
            slot = self._slot(now)
            if not h.changed_slots or h.changed_slots[-1] < slot:
                h.changed_slots.append(slot)
            self._active.add(check_id)
        h.last = severity
        return self._judge(check_id, h, now)

    def tick(self, now: float) -> list[FlapEvent]:
        """Time passed: flapping checks that went quiet stop flapping; quiet
        histories are trimmed."""
        out = []
        for check_id in list(self._active):
            h = self._checks.get(check_id)
            ev = self._judge(check_id, h, now) if h is not None else None
            if ev is not None:
                out.append(ev)
            if h is None or not (h.flapping or h.changed_slots):
                self._active.discard(check_id)
        return out

    def forget(self, check_id: str) -> None:
        """The check was removed (config reload)."""
        self._checks.pop(check_id, None)
        self._active.discard(check_id)

    def _judge(self, check_id: str, h: _History, now: float) -> FlapEvent | None:
        h.percent = self._percent(h, self._slot(now))
        if not h.flapping and h.percent > self.high:
            h.flapping = True
            return FlapEvent(check_id, now, True, h.percent)
        if h.flapping and h.percent < self.low:
            h.flapping = False
            return FlapEvent(check_id, now, False, h.percent)
        return None

    def detail(self, check_id: str) -> str:
        h = self._checks.get(check_id)
        pct = 0.0 if h is None else h.percent
        return (f"flapping: {pct:.0f}% state change in the last {self.window:g}s "
                f"(until below {self.low:g}%)")


class FlapMuter:
    """The FLAPPING stage: mutes a check while its detector says it is flapping.

    The engine should notify a check's *current* state once when it stops
    flapping (the FlapEvent with `stopped`), if it is still not OK.
    """

    reason = MuteReason.FLAPPING

    def __init__(self, detector: FlapDetector):
        self.detector = detector

    def mutes(self, alert: Alert, now: float) -> str | None:
        if self.detector.is_flapping(alert.check_id):
            return self.detector.detail(alert.check_id)
        return None
