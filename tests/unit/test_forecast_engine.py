"""A forecast through the engine, the alarm logic and paging, on a fake clock: a draining
dewar pages once as a forecast, the crossing is logged as the forecast coming true in the
same incident with no second page, and a refill clears it."""

import pytest

from beamwatch.clock import FakeClock
from beamwatch.config import parse_config
from beamwatch.engine.engine import Engine
from beamwatch.model import Severity
from beamwatch.paging.decide import Decider
from beamwatch.sources.soft import SoftSource
from beamwatch.store import Store
from beamwatch.store.outbox import Outbox

CONFIG = """
beamline: I04
storage: {{url: "sqlite:///{db}"}}
checks:
  - id: ln2
    name: LN2 level
    pv: BL04I-EA-DEWAR-01:LEVEL
    below: {{major: 10}}
    forecast: {{horizon: 1h, window: 30m, unit: "%"}}
channels:
  ops: {{kind: webhook, webhook_url: "http://127.0.0.1:9/hook"}}
routes:
  - to: [channel:ops]
"""
PV = "BL04I-EA-DEWAR-01:LEVEL"


@pytest.fixture
async def rig(tmp_path):
    clock = FakeClock()
    config = parse_config(CONFIG.format(db=tmp_path / "bw.db"))
    store = Store(config.storage.url)
    source = SoftSource("ca", clock)
    engine = Engine(config, {"ca": source}, store, clock)
    engine.use(Decider(config, sample_of=engine.sample_of, state_of=engine.state_of))
    await engine.start()
    yield engine, store, source, clock
    await engine.stop()
    store.close()


async def feed(engine, source, clock, level, seconds, rate_per_min=-0.4):
    """A sample and a tick every 10 s, the level falling at `rate_per_min`."""
    for _ in range(int(seconds) // 10):
        clock.advance(10)
        level += rate_per_min / 6
        source.push(PV, round(level, 3))
        engine.tick()
    await engine.flush()
    return level


def log_of(store):
    return [r.transition for r in store.transitions(check_id="ln2")]


async def test_a_drain_pages_once_ahead_and_the_crossing_joins_its_incident(rig):
    engine, store, source, clock = rig
    level = await feed(engine, source, clock, 40.0, 12 * 60)  # 40 % -> 35.2 %: 63 min to go
    assert log_of(store) == [], "no forecast while 10 % is more than an hour away"
    level = await feed(engine, source, clock, level, 45 * 60)  # -> 17.2 %
    first = log_of(store)
    assert [(t.old, t.new, t.reason) for t in first] == [
        (Severity.OK, Severity.MAJOR, "forecast")]
    # it fired when 10 % was an hour away, within ±10 %
    fired = first[0]
    to_go = (fired.value - 10) / 0.4 * 60
    assert 0.9 * 3600 <= to_go <= 1.1 * 3600, fired
    assert fired.message.startswith("forecast: ") and "falling 0.4 %/min" in fired.message
    assert "reaches 10 % (major) in ~" in fired.message
    level = await feed(engine, source, clock, level, 20 * 60)  # -> 9.2 %: crossed
    log = log_of(store)
    assert [(t.old, t.new, t.reason) for t in log] == [
        (Severity.OK, Severity.MAJOR, "forecast"),
        (Severity.MAJOR, Severity.MAJOR, "forecast came true")]
    assert log[1].message.endswith("below major limit 10")
    assert log[0].incident_id is not None and log[0].incident_id == log[1].incident_id
    pages = [r for r in Outbox(store).rows() if r["kind"] == "alarm"]
    assert len(pages) == 1, pages
    assert pages[0]["message"]["text"].startswith("forecast: ")
    assert engine.state_of("ln2").severity == Severity.MAJOR
    # a refill: the alarm clears, and no forecast is left behind
    source.push(PV, 90.0)
    await feed(engine, source, clock, 90.0, 5 * 60, rate_per_min=0.0)
    assert log_of(store)[-1].new == Severity.OK
    assert engine.state_of("ln2").severity == Severity.OK


async def test_a_refill_before_the_crossing_clears_the_forecast(rig):
    engine, store, source, clock = rig
    await feed(engine, source, clock, 30.0, 20 * 60)  # 30 % -> 22 %: forecast
    assert engine.state_of("ln2").severity == Severity.MAJOR
    source.push(PV, 90.0)
    await feed(engine, source, clock, 90.0, 60, rate_per_min=0.0)
    assert engine.state_of("ln2").severity == Severity.OK
    assert [t.reason for t in log_of(store)] == ["forecast", "evaluation"]


async def test_the_first_window_comes_from_the_stored_history(tmp_path):
    """After a restart the forecast does not wait a whole window: the engine reads the
    past values (the store's per-minute history, or any PastValues) at start."""
    clock = FakeClock()
    config = parse_config(CONFIG.format(db=tmp_path / "bw.db"))
    store = Store(config.storage.url)
    now = clock.now()
    asked = []

    def past(check_id, since, until):
        asked.append((check_id, since, until))
        return [(now - 1800 + 60 * i, 25.0 - 0.4 * (i - 30) - 12) for i in range(30)]

    source = SoftSource("ca", clock)
    engine = Engine(config, {"ca": source}, store, clock, past_values=past)
    await engine.start()
    assert asked == [("ln2", now - 1800, now)]
    clock.advance(1)
    source.push(PV, 13.0)
    await engine.flush()
    state = engine.state_of("ln2")
    assert state.severity == Severity.MAJOR and state.message.startswith("forecast: ")
    await engine.stop()
    store.close()
