"""Checks: thresholds with hysteresis, expressions, staleness, disconnection, bad values."""

import math

import pytest

from beamwatch.checks.evaluate import Check, CheckInput
from beamwatch.checks.expr import Expression, ExpressionError
from beamwatch.config.schema import CheckConfig
from beamwatch.model import Sample, Severity

OK, MINOR, MAJOR, INVALID = Severity.OK, Severity.MINOR, Severity.MAJOR, Severity.INVALID


def check(ids=("x", "ring-current"), **kw):
    return Check(CheckConfig(id="x", pv="PV", **kw), list(ids))


def feed(value, t=0.0, connected=True, severity=OK, error=None, inp=None):
    inp = inp or CheckInput(started=0.0)
    inp.update(Sample("PV", value, t, t, connected, severity, 0, "127.0.0.1:5064", error))
    return inp


@pytest.mark.parametrize("value,expected", [
    (250.0, OK), (150.0, MINOR), (5.0, MAJOR), (10.0, MINOR), (200.0, OK),
])
def test_below_levels(value, expected):
    c = check(below={"minor": 200, "major": 10})
    assert c.evaluate(feed(value), 0).severity == expected


def test_above_hysteresis_clears_only_below_the_band():
    c = check(above={"minor": 120, "major": 140}, hysteresis=2)
    inp = feed(121.0)
    assert c.evaluate(inp, 0).severity == MINOR
    feed(119.0, inp=inp)
    assert c.evaluate(inp, 1).severity == MINOR  # within 2 of the limit: still MINOR
    feed(117.9, inp=inp)
    assert c.evaluate(inp, 2).severity == OK


def test_message_names_value_and_limit():
    c = check(above={"major": 140})
    assert c.evaluate(feed(141.5), 0).message == "141.5 above major limit 140"


@pytest.mark.parametrize("value,text", [
    (math.nan, "value is NaN"), (math.inf, "value is inf"), (None, "no value"),
    ("abc", "value 'abc' is not a number"), ((1.0, 2.0), "value is an array of 2"),
])
def test_bad_values_are_invalid_with_a_reason(value, text):
    e = check(above={"major": 1}).evaluate(feed(value), 0)
    assert e.severity == INVALID and text in e.message


def test_when_on_enum_string():
    c = check(when="value != 'Open'", severity="minor")
    assert c.evaluate(feed("Closed"), 0).severity == MINOR
    assert c.evaluate(feed("Open"), 0).severity == OK


def test_when_reads_other_checks_value_by_id():
    c = check(when="value > 3 and ring_current > 10")
    assert c.evaluate(feed(5.0), 0, {"ring-current": 300.0}).severity == MAJOR
    assert c.evaluate(feed(5.0), 0, {"ring-current": 0.0}).severity == OK
    c2 = check(when="checks['ring-current'] < 1")
    assert c2.evaluate(feed(0.0), 0, {"ring-current": 0.5}).severity == MAJOR


def test_when_type_error_is_invalid_not_a_crash():
    e = check(when="value > 3").evaluate(feed("Open"), 0)
    assert e.severity == INVALID and "cannot evaluate" in e.message


@pytest.mark.parametrize("text,error", [
    ("__import__('os')", "only these functions may be called"),
    ("value.__class__", "'Attribute' is not allowed"),
    ("value >", "syntax error"),
    ("nosuch > 1", "unknown name 'nosuch'"),
    ("[x for x in value]", "not allowed"),
])
def test_unsafe_or_wrong_expressions_are_rejected_at_load(text, error):
    with pytest.raises(ExpressionError, match=error):
        Expression(text, ["x"])


def test_epics_severity_is_default_without_other_condition():
    c = check()
    assert c.evaluate(feed(1.0, severity=MAJOR), 0).severity == MAJOR
    assert c.evaluate(feed(1.0, severity=INVALID), 0).severity == INVALID


def test_epics_severity_combined_takes_worst():
    c = check(above={"minor": 10}, epics_severity=True)
    assert c.evaluate(feed(11.0, severity=MAJOR), 0).severity == MAJOR


def test_disconnected_only_after_grace():
    c = check(above={"major": 1}, disconnect_grace="10s")
    inp = feed(None, t=100, connected=False, error="disconnected")
    assert c.evaluate(inp, 105) is None  # no opinion yet: keep the last state
    e = c.evaluate(inp, 110)
    assert e.severity == INVALID and e.message == "disconnected (IOC 127.0.0.1:5064)"


def test_never_connected_after_grace():
    c = check(disconnect_grace="5s")
    inp = CheckInput(started=0.0)
    assert c.evaluate(inp, 4) is None
    assert c.evaluate(inp, 5).message == "no value received since start"


def test_stale_after_no_update():
    c = check(above={"major": 100}, stale="60s")
    inp = feed(1.0, t=0)
    assert c.evaluate(inp, 59).severity == OK
    e = c.evaluate(inp, 61)
    assert e.severity == INVALID and e.message == "stale: no update for 61s"


def test_by_mode_limits_apply_in_that_mode_only():
    c = check(above={"minor": 1e-7, "major": 5e-7},
              by_mode={"maintenance": {"above": {"major": 1e-5}}})
    inp = feed(1e-6)
    assert c.evaluate(inp, 0, mode="user").severity == MAJOR
    assert c.evaluate(inp, 0, mode="maintenance").severity == OK  # looser while vented
    assert c.evaluate(inp, 0).severity == MAJOR
