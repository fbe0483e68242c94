"""Forecasts: will this check cross its own limit within the horizon?

`forecast()` is a pure function of a window of (time, value) points, the
check's limits and `now`: no clock, no I/O, so it is table-tested with
synthetic series. It fits a robust trend and returns a `Prediction` only when
the trend is real:

- single outliers are dropped (a point that jumps away and straight back);
- a step (a refill, a range change) starts the series afresh: only the points
  after the last step are fitted, so a refill clears a drain's forecast and a
  step down is the threshold's business, not a trend;
- the slope is Theil–Sen (the median of pairwise slopes) or least squares, and
  it must be significant by the Mann–Kendall test (|Z| >= 3), so a noisy flat
  signal forecasts nothing;
- the crossing time is extrapolated from the fitted level now, not from the
  last raw value, so one stray sample cannot make or break a forecast.

`Trend` is the bounded store of points the engine keeps per check: one point per
bucket of window/MAX_POINTS seconds.
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ..model import Severity, value_text
from ..timefmt import zone

if TYPE_CHECKING:
    from ..config.schema import CheckConfig, ForecastConfig
    from .evaluate import CheckInput

MAX_POINTS = 60  # points per window: enough for a robust fit, cheap to fit (1770 pairs)
MIN_BUCKET = 1.0  # seconds: one point a second at most
SIGNIFICANCE = 3.0  # Mann–Kendall |Z|: a flat noisy signal passes this about 0.3 % of the time
JUMP = 8.0  # a jump is this many robust noise scales off the trend between two points
METHODS = ("theil-sen", "linear")

Point = tuple[float, float]


@dataclass(frozen=True, slots=True)
class Limit:
    """One of the check's limits: `below` 10 at MINOR."""

    direction: str  # "above" or "below"
    value: float
    severity: Severity

    @property
    def name(self) -> str:
        return self.severity.name.lower()


@dataclass(frozen=True, slots=True)
class Prediction:
    limit: Limit
    at: float  # when the trend reaches the limit (>= now)
    rate: float  # units per second (negative: falling)
    level: float  # the fitted level now
    points: int  # points the fit used


def forecast(points: Iterable[Point], limits: Sequence[Limit], now: float, *,
             horizon: float, window: float, min_points: int = 10,
             method: str = "theil-sen") -> Prediction | None:
    """The first limit the trend of the last `window` reaches within `horizon`, or None."""
    series = sorted((t, v) for t, v in points if now - window <= t <= now and math.isfinite(v))
    series = _after_last_step(series)
    # points are counted by bucket, as Trend keeps them: the open bucket shows up to three
    # samples, and a count that dropped each time a bucket closed would flap at min_points
    bucket = max(MIN_BUCKET, window / MAX_POINTS)
    if len(series) < 3 or len({t // bucket for t, _ in series}) < min_points:
        return None
    ts = [t - now for t, _ in series]  # relative to now: no precision lost on epoch seconds
    ys = [v for _, v in series]
    if abs(_mann_kendall(ys)) < SIGNIFICANCE:
        return None
    slope, level = _theil_sen(ts, ys) if method == "theil-sen" else _least_squares(ts, ys)
    best: Prediction | None = None
    for limit in limits:
        toward = slope < 0 if limit.direction == "below" else slope > 0
        if not toward or slope == 0:
            continue
        at = now + max(0.0, (limit.value - level) / slope)
        if at - now > horizon:
            continue
        if best is None or at < best.at or (at == best.at and limit.severity > best.limit.severity):
            best = Prediction(limit, at, slope, level, len(series))
    return best


# --- the robust parts ------------------------------------------------------------------


def _after_last_step(series: list[Point]) -> list[Point]:
    """The series without isolated outliers and without anything before the last step."""
    if len(series) < 3:
        return series
    d = [(series[i + 1][1] - series[i][1], series[i + 1][0] - series[i][0])
         for i in range(len(series) - 1)]
    rate = statistics.median(dy / dt for dy, dt in d if dt > 0) if any(dt > 0 for _, dt in d) \
        else 0.0
    r = [dy - rate * dt for dy, dt in d]  # each step's departure from the trend
    centre = statistics.median(r)
    scale = 1.4826 * statistics.median(abs(x - centre) for x in r)
    mean_dev = statistics.fmean(abs(x - centre) for x in r)
    # a quantised or noiseless signal has no MAD: fall back on the mean departure, on a
    # few typical moves between points (a rounded drain), and on a sliver of the values'
    # size so that float rounding is never a jump
    span = max(abs(v) for _, v in series)
    typical = statistics.median(abs(dy) for dy, _ in d)
    threshold = max(JUMP * scale, 3 * mean_dev, 5 * typical, 1e-9 * (1 + span))
    jumps = [abs(x - centre) > threshold for x in r]
    keep = [True] * len(series)
    start = 0
    i = 0
    while i < len(r):
        if not jumps[i]:
            i += 1
            continue
        out_and_back = (i + 1 < len(r) and jumps[i + 1]
                        and abs(r[i] + r[i + 1] - 2 * centre) <= threshold)
        if out_and_back:  # point i+1 jumped away and came straight back: an outlier
            keep[i + 1] = False
            i += 2
            continue
        if i == len(r) - 1:  # the newest point jumped: a step or an outlier, not yet known
            keep[i + 1] = False
        else:
            start = i + 1  # a step: the trend before it says nothing about after
        i += 1
    return [p for j, p in enumerate(series) if keep[j] and j >= start]


def _mann_kendall(ys: Sequence[float]) -> float:
    """Mann–Kendall Z of a series in time order: how sure we are that it trends."""
    n = len(ys)
    s = 0
    for i in range(n - 1):
        yi = ys[i]
        later = ys[i + 1:]
        s += sum(1 for y in later if y > yi) - sum(1 for y in later if y < yi)
    var = n * (n - 1) * (2 * n + 5) / 18
    if s == 0 or var <= 0:
        return 0.0
    return (s - (1 if s > 0 else -1)) / math.sqrt(var)


def _theil_sen(ts: Sequence[float], ys: Sequence[float]) -> tuple[float, float]:
    """(slope, level at t=0): the median pairwise slope, and the median intercept."""
    slopes: list[float] = []
    for i in range(len(ts) - 1):
        ti, yi = ts[i], ys[i]
        slopes.extend([(y - yi) / (t - ti)
                       for t, y in zip(ts[i + 1:], ys[i + 1:], strict=True) if t > ti])
    slope = statistics.median(slopes) if slopes else 0.0
    level = statistics.median(y - slope * t for t, y in zip(ts, ys, strict=True))
    return slope, level


def _least_squares(ts: Sequence[float], ys: Sequence[float]) -> tuple[float, float]:
    try:
        slope, intercept = statistics.linear_regression(ts, ys)
    except statistics.StatisticsError:  # all points at one time
        return 0.0, statistics.fmean(ys)
    return slope, intercept


# --- what people read ------------------------------------------------------------------


def describe(p: Prediction, value: object, now: float, timezone: str = "UTC",
             unit: str = "") -> str:
    """'forecast: 23 % falling 0.4 %/min: reaches 10 % (minor) in ~33 min, at 02:41'"""
    u = f" {unit}" if unit else ""
    way = "falling" if p.rate < 0 else "rising"
    per_min = abs(p.rate) * 60
    rate = f"{per_min:.2g}{u}/min" if per_min >= 0.1 else f"{per_min * 60:.2g}{u}/h"
    when = datetime.fromtimestamp(p.at, zone(timezone))
    today = datetime.fromtimestamp(now, zone(timezone)).date()
    at = when.strftime("%H:%M") if when.date() == today else when.strftime("%a %H:%M")
    shown = value_text(value) if not isinstance(value, float) else f"{value:.4g}"
    return (f"forecast: {shown}{u} {way} {rate}: reaches {p.limit.value:g}{u} "
            f"({p.limit.name}) in {_in(p.at - now)}, at {at}")


def _in(seconds: float) -> str:
    if seconds < 90:
        return f"~{max(seconds, 0):.0f} s"
    if seconds < 90 * 60:
        return f"~{seconds / 60:.0f} min"
    return f"~{seconds / 3600:.1f} h"


# --- a check's forecast, as the check evaluates it ---------------------------------------

REFIT_EVERY = 1.0  # seconds: a 10 Hz PV is not re-fitted ten times a second


class ForecastRule:
    """The `forecast:` of one check: its limits, the severity it alarms at, its message."""

    def __init__(self, config: ForecastConfig, limits: list[Limit], timezone: str,
                 unit: str):
        self.config = config
        self.limits = limits
        self.timezone = timezone
        self.unit = unit

    def new_trend(self) -> Trend:
        return Trend(self.config.window)

    def severity(self, limit: Limit) -> Severity:
        how = self.config.severity
        if how == "same":
            return limit.severity
        if how == "lower":
            return max(Severity.MINOR, Severity(limit.severity - 1))
        return Severity[how.upper()]

    def verdict(self, inp: CheckInput, value: Any, current: Severity,
                now: float) -> tuple[Severity, str] | None:
        """(severity, message) when a limit worse than `current` is forecast, else None."""
        if inp.trend is None:
            return None
        cached = inp.prediction
        if cached is not None and 0 <= now - cached[0] < REFIT_EVERY and cached[1] == current:
            p = cached[2]
        else:
            cfg = self.config
            p = forecast(inp.trend.window_points(now),
                         [lim for lim in self.limits if lim.severity > current], now,
                         horizon=cfg.horizon, window=cfg.window, min_points=cfg.min_points,
                         method=cfg.method)
            inp.prediction = (now, current, p)
        if p is None:
            return None
        severity = self.severity(p.limit)
        if severity <= current:
            return None
        return severity, describe(p, value, now, self.timezone, self.unit)


def forecast_rule(config: CheckConfig, timezone: str = "UTC") -> ForecastRule | None:
    if config.forecast is None:
        return None
    limits = []
    for direction in ("above", "below"):
        levels = getattr(config, direction)
        if levels is None:
            continue
        for name in ("minor", "major"):
            value = getattr(levels, name)
            if value is not None:
                limits.append(Limit(direction, float(value), Severity[name.upper()]))
    unit = config.forecast.unit or ("%" if config.measure == "free_percent" else "")
    return ForecastRule(config.forecast, limits, timezone, unit)


# --- the engine's memory of one check ---------------------------------------------------


class Trend:
    """The recent points of one check, one per bucket (the last value in it), for at most
    one window: bounded memory however fast the PV updates. The open bucket shows its
    first and its last two samples, so a refill is seen as a step at its second sample,
    not only once its bucket closes."""

    def __init__(self, window: float):
        self.window = window
        self.bucket = max(MIN_BUCKET, window / MAX_POINTS)
        self.points: deque[Point] = deque(maxlen=MAX_POINTS + 2)  # closed buckets
        self._open: list[Point] = []  # the open bucket's first and last two samples
        self._open_bucket: float | None = None

    def add(self, t: float, value: float) -> None:
        if not math.isfinite(value):
            return
        latest = self._open[-1][0] if self._open else (self.points[-1][0] if self.points
                                                        else None)
        if latest is not None and t < latest:
            return  # older than what we hold (history arriving after samples): skip
        bucket = t // self.bucket
        if bucket != self._open_bucket:
            if self._open:
                self.points.append(self._open[-1])
            self._open, self._open_bucket = [(t, value)], bucket
        elif len(self._open) < 3:
            self._open.append((t, value))
        else:
            self._open[1:] = [self._open[2], (t, value)]

    def seed(self, points: Iterable[Point]) -> None:
        """Points from before this run (the stored per-minute history), oldest first."""
        for t, v in sorted(points):
            self.add(t, v)

    def window_points(self, now: float) -> list[Point]:
        """The points in the window; the last value carried to `now` (Channel Access sends
        a value only when it changes: no news is the same value)."""
        start = now - self.window
        while self.points and self.points[0][0] < start:
            self.points.popleft()
        out = list(self.points) + [p for p in self._open if p[0] >= start]
        if out and now - out[-1][0] >= self.bucket:
            out.append((now, out[-1][1]))
        return out
