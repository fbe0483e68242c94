"""Flap detection: weighted percent state change with hysteresis, one start, one stop."""

import pytest

from beamwatch.engine.flapping import FlapDetector, FlapMuter
from beamwatch.engine.mute import Alert
from beamwatch.model import MuteReason, Severity

OK, MAJOR = Severity.OK, Severity.MAJOR


def chatter(det, check, start, end, period):
    """Toggle OK/MAJOR every `period` seconds from start to end, ticking every second."""
    events = []
    t, sev = start, OK
    while t < end:
        ev = det.record(check, sev, t)
        if ev:
            events.append(ev)
        sev = MAJOR if sev == OK else OK
        t += period
    return events


def quiet(det, start, end):
    events = []
    for t in range(int(start), int(end)):
        events += det.tick(t)
    return events


def test_chattering_check_starts_flapping_once_then_stops_once_when_settled():
    det = FlapDetector(interval=10, slots=20, low=25, high=30)
    events = chatter(det, "dcm-temp", 0, 300, 4)
    assert [e.started for e in events] == [True]
    start = events[0]
    assert 30 < start.percent < 45 and start.time < 80
    assert det.is_flapping("dcm-temp")
    assert quiet(det, 300, 350) == []  # still flapping a little after it went quiet
    stops = quiet(det, 350, 1000)
    assert [e.stopped for e in stops] == [True]
    assert stops[0].percent < 25
    assert not det.is_flapping("dcm-temp")
    assert quiet(det, 1000, 1200) == []


@pytest.mark.parametrize("changes,flaps", [
    (1, False),  # one alarm, one clear: normal life
    (5, False),  # 5 of 20 slots changed: ~25-30 %, below the high threshold
    (8, True),
])
def test_threshold(changes, flaps):
    det = FlapDetector(interval=10, slots=20)
    det.record("x", OK, 0)
    events = [det.record("x", MAJOR if i % 2 == 0 else OK, 200 + 10 * i) for i in range(changes)]
    assert any(e is not None and e.started for e in events) is flaps


def test_several_changes_in_one_slot_count_once():
    det = FlapDetector(interval=10, slots=20)
    det.record("x", OK, 0)
    for i in range(50):
        det.record("x", MAJOR if i % 2 == 0 else OK, 100 + i * 0.1)
    assert det.percent("x", 105) == pytest.approx(100 * 1.2 / 20)
    assert not det.is_flapping("x")


def test_unchanged_severity_is_not_a_change():
    det = FlapDetector()
    for t in range(100):
        assert det.record("x", MAJOR, t) is None
    assert det.percent("x", 100) == 0


def test_muter_and_detail():
    det = FlapDetector(interval=10, slots=20)
    chatter(det, "x", 0, 200, 3)
    muter = FlapMuter(det)
    assert muter.reason == MuteReason.FLAPPING
    detail = muter.mutes(Alert("x"), 200)
    assert detail.startswith("flapping: ") and "state change in the last 200s" in detail
    assert muter.mutes(Alert("y"), 200) is None


def test_bad_thresholds():
    with pytest.raises(ValueError):
        FlapDetector(low=40, high=30)
