"""One sample or one check can never stop the engine.

Property tests feed every check kind and the alarm logic values no PV should
send (NaN, ±inf, huge ints, bytes, dicts, nested and very long arrays...):
nothing raises, the severity is always a defined Severity and the message says
why. Engine tests show a check that does raise is contained: it alone goes
INVALID, the rest of its batch and every later check still run.
"""

from __future__ import annotations

import logging
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from beamwatch.checks.evaluate import Check, CheckInput
from beamwatch.checks.expr import FUNCTIONS, Expression, ExpressionError
from beamwatch.clock import FakeClock
from beamwatch.config import parse_config
from beamwatch.config.schema import CheckConfig
from beamwatch.engine.alarm import AlarmLogic
from beamwatch.engine.engine import Engine
from beamwatch.model import Evaluation, Sample, Severity
from beamwatch.sources.soft import SoftSource
from beamwatch.store import Store

# --- values no PV should send ----------------------------------------------------------


def _id(value) -> str:
    if isinstance(value, int) and abs(value) > 10**20:
        return f"int-{value.bit_length()}-bits"
    try:
        return repr(value)[:20]
    except RecursionError:
        return "nested"


def _deeply_nested(depth: int) -> list:
    out: list = []
    for _ in range(depth):
        out = [out]
    return out


ODD = [
    math.nan, math.inf, -math.inf, 10**400, -(10**400), 10**5000, 2**63, -(2**63) - 1,
    "nan", "inf", "-inf", "1e400", "", " ", "Open", "\u00e9\u00e8\u2603\U0001f525", "\x00",
    "x" * 200_000, b"", b"\xff\xfe", b"1.5", (), [], tuple(range(200_000)),
    tuple([math.nan] * 1000), _deeply_nested(5000), {}, {"a": 1}, {1: [2, {3: 4}]},
    {"value": math.inf}, True, False, None, 0, -1, 1.5, 1e308, -1e-308, 5e-324,
]

def odd_value(index: int):
    return ODD[index]


scalars = st.one_of(
    st.none(), st.booleans(), st.integers(),
    st.integers(min_value=10**300, max_value=10**4000),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=50),
    st.binary(max_size=50),
    # by index: hypothesis describes strategies with repr(), which a 5000-digit int refuses
    st.sampled_from(range(len(ODD))).map(odd_value),
)
values = st.recursive(
    scalars,
    lambda kids: st.one_of(st.lists(kids, max_size=5), st.tuples(kids, kids),
                           st.dictionaries(st.text(max_size=5), kids, max_size=3)),
    max_leaves=12,
)
# the record's own severity, as an odd source might send it
record_severities = st.one_of(st.sampled_from(list(Severity)), st.integers(-3, 30),
                              st.none(), st.sampled_from(["MAJOR", "bogus", 2.5, math.nan]))

# --- every check kind ------------------------------------------------------------------

IDS = ["x", "ring-current", "other"]
EXPRESSIONS = [
    "abs(value) > 3", "min(value, 5) < 1", "max(value) > 3", "min(value) < 0",
    "round(value) == 3", "round(value, 2) > 1.5", "len(value) > 3", "float(value) > 3",
    "int(value) > 3", "str(value) == 'Open'", "isnan(value)",
    "value * 3 - 1 > 2", "value / 2 > 1", "value % 2 == 1", "value // 2 > 1", "-value < 0",
    "+value > 0", "not value", "value * 1000000 == 'x'", "'%s' % value == 'x'",
    "value + value == value", "value in ('Open', 'Closed')", "'a' in value", "value not in value",
    "ring_current > 10 and value != 'Open'", "checks['ring-current'] * value > 3",
    "other or value", "severity >= MAJOR", "severity == value", "value == None",
    "[value, 1] == (1, value)", "1 < value < 2", "abs(int(float(str(value)))) > len(str(value))",
]
# the tests must exercise every function the language offers
assert {f for f in FUNCTIONS if not any(f"{f}(" in e for e in EXPRESSIONS)} == set()

CONFIGS = [
    {"above": {"minor": 120, "major": 140}, "hysteresis": 2},
    {"below": {"minor": 200, "major": 10}, "hysteresis": 5},
    {"above": {"major": 1}, "below": {"major": -1}, "hysteresis": 0.5},
    {"stale": 60, "above": {"major": 1}},
    {"epics_severity": True},
    {},  # no condition: the record's own severity
    {"when": "value > 3", "epics_severity": True, "above": {"minor": 0}},
    {"above": {"major": 10}, "by_mode": {"shutdown": {"above": {"major": 1e9}}}},
    {"when": "value > 3", "by_mode": {"shutdown": {"when": "int(value) > 3"}}},
    *({"when": e, "severity": "minor"} for e in EXPRESSIONS),
]


def make_check(kw: dict) -> Check:
    return Check(CheckConfig(id="x", pv="PV", **kw), IDS)


CHECKS = [make_check(kw) for kw in CONFIGS]


def sample(value, t: float, severity=Severity.OK, connected: bool = True) -> Sample:
    return Sample("PV", value if connected else None, t, t, connected, severity, 0,
                  "127.0.0.1:5064", None if connected else "disconnected")


def assert_says_why(ev: Evaluation | None) -> None:
    if ev is None:  # no opinion yet (grace period): allowed
        return
    assert isinstance(ev.severity, Severity) and ev.severity in tuple(Severity)
    assert isinstance(ev.message, str) and ev.message.strip()
    assert len(ev.message) < 2000  # a message, not a dump of the value


SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@SETTINGS
@given(st.sampled_from(range(len(CHECKS))),
       st.lists(st.tuples(values, record_severities, st.booleans()), min_size=1, max_size=4),
       st.dictionaries(st.sampled_from(IDS), values), st.sampled_from([None, "user", "shutdown"]),
       st.floats(0, 200))
def test_every_check_kind_judges_any_value_without_raising(index, feed, others, mode, later):
    check, inp = CHECKS[index], CheckInput(started=0.0)
    for t, (value, record_severity, connected) in enumerate(feed):
        inp.update(sample(value, float(t), record_severity, connected))
        assert_says_why(check.evaluate(inp, float(t), others, mode))
    assert_says_why(check.evaluate(inp, len(feed) + later, others, mode))  # stale, grace


@pytest.mark.parametrize("value", ODD, ids=_id)
@pytest.mark.parametrize("index", range(len(CHECKS)), ids=lambda i: str(CONFIGS[i])[:40])
def test_each_odd_value_with_each_check_kind(index, value):
    inp = CheckInput(started=0.0)
    inp.update(sample(value, 0.0))
    assert_says_why(CHECKS[index].evaluate(inp, 0.0, {"ring-current": value}))


@pytest.mark.parametrize("value,why", [
    (math.inf, "infinity"), (10**400, "too large"), ("x" * 10, "too long"),
])
def test_expression_overflow_is_an_expression_error_saying_why(value, why):
    e = Expression("int(value) > 3 and float(value) > 1" if why != "too long"
                   else "value * 1000000000 == 'x'")
    with pytest.raises(ExpressionError, match=why):
        e.evaluate(value, Severity.OK, {})


def test_string_formatting_cannot_blow_up_memory():
    with pytest.raises(ExpressionError, match="not allowed"):
        Expression("'%999999999d' % value == 'x'").evaluate(1, Severity.OK, {})


def test_a_nested_expression_too_deep_is_a_config_error_not_a_crash():
    with pytest.raises(ExpressionError, match="nested too deeply"):
        Expression("-" * 100_000 + "value > 1")


@pytest.mark.parametrize("value,why", [
    ("nan", "NaN"), ("inf", "inf"), ("1e400", "inf"), (10**400, "too large"),
    (10**5000, "too large"),
], ids=_id)
def test_threshold_on_a_number_in_disguise_is_invalid_not_ok(value, why):
    inp = CheckInput(started=0.0)
    inp.update(sample(value, 0.0))
    ev = make_check({"above": {"major": 1}}).evaluate(inp, 0.0)
    assert ev.severity == Severity.INVALID and why in ev.message


def test_unknown_record_severity_is_invalid_and_says_so():
    inp = CheckInput(started=0.0)
    inp.update(sample(1.0, 0.0, severity=-1))
    ev = make_check({"epics_severity": True}).evaluate(inp, 0.0)
    assert ev.severity == Severity.INVALID and "-1" in ev.message


# --- the alarm logic -------------------------------------------------------------------

odd_severities = st.one_of(st.sampled_from(list(Severity)), st.integers(-5, 10), st.none(),
                           st.sampled_from(["MAJOR", "bogus", math.nan, 2.0]))
evaluations = st.builds(Evaluation, odd_severities,
                        st.one_of(st.text(max_size=20), st.none(), st.integers()),
                        values, st.floats(0, 1e9))
steps = st.one_of(
    st.tuples(st.just("evaluate"), evaluations, st.floats(0, 100)),
    st.tuples(st.just("tick"), st.none(), st.floats(0, 100)),
    st.tuples(st.just("ack"), st.none(), st.floats(0, 100)),
)


@SETTINGS
@given(st.floats(0, 60), st.booleans(), st.lists(steps, max_size=12))
def test_alarm_logic_never_raises_and_keeps_a_defined_severity(delay, latch, script):
    logic, now = AlarmLogic("x", delay, latch), 0.0
    for action, ev, dt in script:
        now += dt
        if action == "evaluate":
            transitions = logic.evaluate(ev, now)
        elif action == "tick":
            transitions = logic.tick(now)
        else:
            transitions = logic.acknowledge("ana", now)
        s = logic.state
        assert isinstance(s.severity, Severity) and isinstance(s.current, Severity)
        assert s.pending is None or isinstance(s.pending, Severity)
        assert isinstance(s.message, str)
        if s.current > Severity.OK or s.pending not in (None, Severity.OK):
            assert s.message.strip()  # says why
        for tr in transitions:
            assert isinstance(tr.new, Severity) and isinstance(tr.old, Severity)
            assert isinstance(tr.message, str)


@pytest.mark.parametrize("bad", [None, -1, 7, "MAJOR", "bogus", math.nan])
def test_an_evaluation_without_a_valid_severity_raises_an_invalid_alarm(bad):
    logic = AlarmLogic("x")
    [tr] = logic.evaluate(Evaluation(bad, "", 1.0, 0.0), 0.0)
    assert tr.new == Severity.INVALID
    assert "severity" in tr.message and repr(bad) in tr.message


# --- the engine: one check's failure is its own ----------------------------------------

CONFIG = """
beamline: I04
storage: {{url: "sqlite:///{db}"}}
checks:
  - id: broken
    pv: BL04I-BROKEN
    above: {{major: 100}}
    stale: 60s
  - id: counts
    pv: BL04I-EA-DET-01:COUNTS
    when: "int(value) > 3"
  - id: ring-current
    pv: SR-DI-DCCT-01:SIGNAL
    below: {{major: 10, minor: 200}}
    for: 30s
  - id: dcm-temp
    pv: BL04I-MO-DCM-01:TEMP1
    above: {{minor: 120, major: 140}}
"""


@pytest.fixture
async def engine(tmp_path):
    clock = FakeClock()
    config = parse_config(CONFIG.format(db=tmp_path / "bw.db"))
    store = Store(config.storage.url)
    source = SoftSource("ca", clock)
    engine = Engine(config, {"ca": source}, store, clock)
    await engine.start()
    yield engine
    await engine.stop()
    store.close()


def batch(clock, *pairs) -> list[Sample]:
    t = clock.now()
    return [Sample(pv, value, t, t, True, Severity.OK, 0, "soft:0") for pv, value in pairs]


def state(engine, check_id):
    return engine.store.load_states()[check_id]


def break_check(engine, monkeypatch, check_id="broken"):
    def evaluate(*args, **kwargs):
        raise RuntimeError("simulated bug in a check")
    monkeypatch.setattr(engine.runtimes[check_id].check, "evaluate", evaluate)


async def test_a_raising_check_is_invalid_and_the_rest_of_its_batch_is_evaluated(
        engine, monkeypatch):
    break_check(engine, monkeypatch)
    engine.on_samples(batch(engine.clock, ("BL04I-BROKEN", 1.0),
                            ("BL04I-MO-DCM-01:TEMP1", 150.0)))
    await engine.flush()
    broken = state(engine, "broken")
    assert broken.severity == Severity.INVALID
    assert "RuntimeError" in broken.message and "simulated bug" in broken.message
    assert state(engine, "dcm-temp").severity == Severity.MAJOR
    assert state(engine, "dcm-temp").message == "150 above major limit 140"


async def test_a_raising_check_does_not_stop_a_later_delayed_alarm_on_tick(
        engine, monkeypatch, caplog):
    engine.on_samples(batch(engine.clock, ("BL04I-BROKEN", 1.0),
                            ("SR-DI-DCCT-01:SIGNAL", 5.0)))
    break_check(engine, monkeypatch)  # from now on, every tick re-evaluates it (stale:)
    for _ in range(30):
        engine.clock.advance(1)
        engine.tick()
    await engine.flush()
    [row] = engine.store.transitions(check_id="ring-current")
    assert (row.transition.new, row.transition.message) == (
        Severity.MAJOR, "5 below major limit 10")
    assert state(engine, "broken").severity == Severity.INVALID
    failures = [r for r in caplog.records
                if r.levelno >= logging.ERROR and "broken" in r.getMessage()]
    assert len(failures) == 1  # once per check and kind of error, not every second


async def test_an_expression_fed_inf_makes_only_that_check_invalid(engine):
    engine.on_samples(batch(engine.clock, ("BL04I-EA-DET-01:COUNTS", math.inf),
                            ("BL04I-MO-DCM-01:TEMP1", 130.0), ("SR-DI-DCCT-01:SIGNAL", 300.0)))
    await engine.flush()
    counts = state(engine, "counts")
    assert counts.severity == Severity.INVALID and "infinity" in counts.message
    assert state(engine, "dcm-temp").severity == Severity.MINOR
    ring = engine.state_of("ring-current")  # judged OK: no transition to store
    assert (ring.severity, ring.message) == (Severity.OK, "OK (300)")


async def test_a_broken_check_recovers_when_it_evaluates_again(engine, monkeypatch):
    engine.on_samples(batch(engine.clock, ("BL04I-EA-DET-01:COUNTS", math.inf)))
    engine.on_samples(batch(engine.clock, ("BL04I-EA-DET-01:COUNTS", 1)))
    await engine.flush()
    assert [r.transition.new for r in engine.store.transitions(check_id="counts")] == [
        Severity.INVALID, Severity.OK]
