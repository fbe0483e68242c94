"""Alarm logic: delays, latch and acknowledgement; a fake clock, the transitions returned."""

import pytest

from beamwatch.engine.alarm import AlarmLogic
from beamwatch.model import Evaluation, Severity

OK, MINOR, MAJOR, INVALID = Severity.OK, Severity.MINOR, Severity.MAJOR, Severity.INVALID


def ev(sev, t=0.0, msg="m", value=1.0):
    return Evaluation(sev, msg, value, t)


def test_no_delay_raises_and_clears_at_once():
    logic = AlarmLogic("x")
    [t] = logic.evaluate(ev(MAJOR), 10)
    assert (t.old, t.new, t.current, t.reason) == (OK, MAJOR, MAJOR, "evaluation")
    [t] = logic.evaluate(ev(OK), 11)
    assert (t.old, t.new) == (MAJOR, OK)
    assert logic.state.since == 11


def test_same_severity_twice_is_one_transition():
    logic = AlarmLogic("x")
    assert len(logic.evaluate(ev(MAJOR), 0)) == 1
    assert logic.evaluate(ev(MAJOR, msg="still"), 1) == []
    assert logic.state.message == "still"


def test_delay_spike_shorter_than_for_never_alarms():
    logic = AlarmLogic("x", delay=30)
    assert logic.evaluate(ev(MAJOR), 0) == []
    assert logic.tick(5) == []
    assert logic.evaluate(ev(OK), 5) == []  # back to OK before 30 s: cancelled
    assert logic.tick(100) == []
    assert logic.state.severity == OK


def test_delay_alarm_after_for_then_clear_after_for():
    logic = AlarmLogic("x", delay=30)
    logic.evaluate(ev(MAJOR), 0)
    assert logic.tick(29.9) == []
    [t] = logic.tick(30)
    assert t.new == MAJOR and t.time == 30
    logic.evaluate(ev(OK), 40)
    assert logic.tick(69) == []
    [t] = logic.tick(70)
    assert t.new == OK


def test_delay_keeps_first_departure_time_when_severity_moves():
    logic = AlarmLogic("x", delay=10)
    logic.evaluate(ev(MINOR), 0)
    logic.evaluate(ev(MAJOR), 5)  # still away from OK: the clock keeps running
    [t] = logic.tick(10)
    assert t.new == MAJOR


def test_worse_alarm_rearms_acknowledgement():
    logic = AlarmLogic("x")
    logic.evaluate(ev(MINOR), 0)
    [t] = logic.acknowledge("ana", 1)
    assert t.reason == "ack" and t.actor == "ana" and t.acked
    [t] = logic.evaluate(ev(MAJOR), 2)
    assert t.new == MAJOR and not t.acked


def test_better_but_not_ok_keeps_acknowledgement_without_latch():
    logic = AlarmLogic("x")
    logic.evaluate(ev(MAJOR), 0)
    logic.acknowledge("ana", 1)
    [t] = logic.evaluate(ev(MINOR), 2)
    assert t.new == MINOR and t.acked


def test_latch_holds_worst_until_acknowledged():
    logic = AlarmLogic("x", latch=True)
    logic.evaluate(ev(MAJOR), 0)
    [t] = logic.evaluate(ev(OK), 1)
    assert (t.old, t.new, t.current) == (MAJOR, MAJOR, OK)  # latched: still MAJOR
    [t] = logic.acknowledge("ben", 2)
    assert (t.new, t.acked) == (OK, False)
    assert logic.state.severity == OK


def test_latch_ack_while_still_bad_follows_current():
    logic = AlarmLogic("x", latch=True)
    logic.evaluate(ev(MAJOR), 0)
    logic.evaluate(ev(MINOR), 1)
    [t] = logic.acknowledge("ben", 2)
    assert (t.new, t.acked) == (MINOR, True)
    [t] = logic.evaluate(ev(OK), 3)
    assert t.new == OK and not t.acked


@pytest.mark.parametrize("sev", [OK])
def test_acknowledging_ok_or_twice_does_nothing(sev):
    logic = AlarmLogic("x")
    assert logic.acknowledge("ana", 0) == []
    logic.evaluate(ev(MAJOR), 1)
    assert len(logic.acknowledge("ana", 2)) == 1
    assert logic.acknowledge("ana", 3) == []


def test_deadline_reports_when_pending_commits():
    logic = AlarmLogic("x", delay=15)
    assert logic.deadline is None
    logic.evaluate(ev(INVALID), 100)
    assert logic.deadline == 115
