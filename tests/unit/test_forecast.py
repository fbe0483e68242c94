"""Forecasts on synthetic series with a fake clock: drains forecast their crossing
within ±10 % of the truth; flat noise, an outlier, a refill and a step forecast nothing."""

from __future__ import annotations

import random

import pytest

from beamwatch.checks.forecast import Limit, Trend, describe, forecast
from beamwatch.model import Severity

T0 = 1_780_000_000.0
WINDOW = 30 * 60.0
HORIZON = 60 * 60.0
LN2 = [Limit("below", 10.0, Severity.MINOR), Limit("below", 5.0, Severity.MAJOR)]


def drain(t: float, start: float = 80.0, rate: float = -0.4 / 60) -> float:
    return start + rate * (t - T0)


def flat(t: float) -> float:
    return 30.0


def with_noise(fn, sd: float, seed: int = 4):
    rng = random.Random(seed)
    return lambda t: fn(t) + rng.gauss(0, sd)


def with_outlier(fn, at: float, size: float):
    return lambda t: fn(t) + (size if at <= t < at + 10 else 0.0)


def stepped(at: float):
    return lambda t: 40.0 if t < at else 14.0


def run(signal, seconds: float, every: float = 10.0, method: str = "theil-sen"):
    """Feed a Trend one sample every `every` seconds of fake time; the first prediction
    and the time it was made, or (None, None)."""
    trend = Trend(WINDOW)
    t = T0
    while t <= T0 + seconds:
        trend.add(t, signal(t))
        p = forecast(trend.window_points(t), LN2, t, horizon=HORIZON, window=WINDOW,
                     min_points=10, method=method)
        if p is not None:
            return p, t
        t += every
    return None, None


# the drain crosses 10 % at T0 + (80 - 10) / (0.4 / 60) = T0 + 10 500 s
TRUE_CROSSING = T0 + 70 / (0.4 / 60)


@pytest.mark.parametrize("method", ["theil-sen", "linear"])
@pytest.mark.parametrize("signal", [drain, with_noise(drain, 0.5),
                                    with_outlier(drain, T0 + 6500, 30.0),
                                    lambda t: round(drain(t), 1)],
                         ids=["linear drain", "drain plus noise", "drain with an outlier",
                              "drain read to 0.1"])
def test_a_drain_is_forecast_about_one_horizon_ahead(signal, method):
    p, when = run(signal, 4 * 3600, method=method)
    assert p is not None, "no forecast on a drain"
    assert p.limit.severity == Severity.MINOR and p.limit.value == 10.0
    # forecast when the truth is one horizon away, within ±10 %
    assert 0.9 * HORIZON <= TRUE_CROSSING - when <= 1.1 * HORIZON + 10
    # and the predicted time of the crossing within ±10 % of the time still to go
    assert abs(p.at - TRUE_CROSSING) <= 0.1 * (TRUE_CROSSING - when)
    assert p.rate == pytest.approx(-0.4 / 60, rel=0.1)


@pytest.mark.parametrize("signal", [
    flat, with_noise(flat, 2.0), with_noise(flat, 0.05, seed=9),
    with_outlier(flat, T0 + 1200, -25.0),  # one reading of 5 %, below both limits
    stepped(T0 + 1800),  # a step down that stays: the threshold's business, not a trend
], ids=["flat", "flat noise", "flat small noise", "one outlier", "a step change"])
def test_nothing_is_forecast_without_a_trend(signal):
    p, when = run(signal, 3 * 3600)
    assert p is None, f"forecast {p} at {when - T0}s on a signal with no trend"


def test_noise_flat_across_many_seeds_forecasts_nothing():
    for seed in range(20):
        p, when = run(with_noise(lambda t: 12.0, 1.0, seed), 3600, every=30)
        assert p is None, f"seed {seed}: forecast {p} at {when - T0}s"


def test_a_refill_clears_the_forecast():
    trend = Trend(WINDOW)
    level = 80.0
    predictions = []
    for i in range(0, 3 * 3600, 10):
        t = T0 + i
        if i == 9000:
            level = 85.0  # refilled
        level -= 0.4 / 60 * 10 if i < 9000 else 0.0
        trend.add(t, level + random.Random(i).gauss(0, 0.1))
        predictions.append((i, forecast(trend.window_points(t), LN2, t, horizon=HORIZON,
                                        window=WINDOW)))
    before = [p for i, p in predictions if 8000 <= i < 9000]
    # the first sample after the jump could be an outlier; the second shows a step
    after = [p for i, p in predictions if i >= 9010]
    assert all(p is not None for p in before), "the drain was forecast before the refill"
    assert all(p is None for p in after), "the refill clears the forecast"


def test_a_rise_forecasts_an_above_limit():
    limits = [Limit("above", 105.0, Severity.MINOR), Limit("above", 110.0, Severity.MAJOR)]
    pts = [(T0 + i * 60, 100.0 + 3 * i / 60) for i in range(61)]  # +3 K in an hour
    now = pts[-1][0]
    p = forecast(pts, limits, now, horizon=2 * 3600, window=3600)
    assert p is not None and p.limit.value == 105.0
    assert p.at - now == pytest.approx(2400, rel=0.01)  # +2 K at 3 K/h
    # a falling trend never forecasts an above limit
    assert forecast([(t, 200 - v) for t, v in pts], limits, now, horizon=1e6,
                    window=3600) is None


def test_too_few_points_forecast_nothing():
    pts = [(T0 + i, 50.0 - i) for i in range(10)]
    assert forecast(pts, LN2, T0 + 9, horizon=1e6, window=60, min_points=12) is None
    assert forecast(pts, LN2, T0 + 9, horizon=1e6, window=60, min_points=10) is not None


def test_beyond_the_horizon_is_no_forecast():
    pts = [(T0 + i * 60, 80.0 - 0.01 * i) for i in range(30)]  # 0.01 %/min: days away
    assert forecast(pts, LN2, pts[-1][0], horizon=HORIZON, window=WINDOW) is None


def test_the_message_gives_the_rate_and_the_time():
    p = forecast([(T0 + i * 60, 35.0 - 0.4 * i) for i in range(31)], LN2, T0 + 1800,
                 horizon=HORIZON, window=WINDOW)
    assert p is not None
    text = describe(p, 23.0, T0 + 1800, "UTC", unit="%")
    # level now 23 %, 13 % to go at 0.4 %/min: 32.5 min
    assert text.startswith("forecast: 23 % falling 0.4 %/min: reaches 10 % (minor) in ~3")
    assert text.endswith(" min, at " + _hhmm(p.at))


def _hhmm(t: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(t, UTC).strftime("%H:%M")


def test_the_trend_keeps_bounded_memory_and_carries_the_last_value():
    trend = Trend(60.0)
    for i in range(10_000):  # 10 Hz for 1000 s
        trend.add(T0 + i / 10, float(i))
    assert len(trend.points) <= 62
    pts = trend.window_points(T0 + 1010)
    assert len(pts) <= 63 and pts[-1] == (T0 + 1010, 9999.0)
