"""Self-monitoring: beamwatch's own health as `beamwatch.*` checks (issue 12, item 12).

Metrics -> samples -> checks with a fake clock and a real SQLite store; the config
rules for `internal:` checks and `monitor:`."""

from __future__ import annotations

import sqlite3

import pytest

from beamwatch.clock import FakeClock
from beamwatch.config import ConfigError, parse_config
from beamwatch.config.schema import dump_safe
from beamwatch.engine.engine import Engine
from beamwatch.health import SelfMonitor
from beamwatch.model import Severity
from beamwatch.sources.soft import SoftSource
from beamwatch.store import Store
from beamwatch.store import tables as t
from beamwatch.store.outbox import Outbox

BUILT_IN = ["beamwatch.store", "beamwatch.quarantine", "beamwatch.outbox",
            "beamwatch.delivery", "beamwatch.ca", "beamwatch.loop", "beamwatch.samples"]

CONFIG = """
beamline: I04
storage: {{url: "sqlite:///{db}"}}
checks:
  - id: fe-vacuum
    pv: FE04I-VA-01:P
    above: {{major: 1e-6}}
  - id: dcm-temp
    pv: BL04I-MO-DCM-01:TEMP1
    above: {{major: 140}}
  - id: beamwatch.samples   # a busy beamline: silence on CA is news (default: shown only)
    above: {{major: 300}}
"""


def config_of(text: str, **env: str):
    return parse_config("beamline: I04\n" + text, "bw.yaml", env=env)


# --- config ------------------------------------------------------------------------------


def test_the_built_in_checks_are_there_with_their_defaults():
    config = config_of("checks:\n  - {id: a, pv: A, above: {major: 1}}\n")
    assert config.check_ids == ["a", *BUILT_IN]
    assert config.check("beamwatch.samples").above is None  # quiet PVs send nothing: shown
    store = config.check("beamwatch.store")
    assert (store.group, store.internal, store.above.major) == ("beamwatch", "store", 30)
    outbox = config.check("beamwatch.outbox")
    assert (outbox.above.minor, outbox.above.major) == (120, 600)


def test_a_check_the_user_declares_replaces_the_built_in_one():
    config = config_of("checks:\n  - id: beamwatch.outbox\n    above: {major: 300}\n"
                       "    for: 1m\n")
    outbox = config.check("beamwatch.outbox")
    assert (outbox.internal, outbox.group, outbox.above.major, outbox.above.minor,
            outbox.for_) == ("outbox", "beamwatch", 300, None, 60)
    assert config.check_ids.count("beamwatch.outbox") == 1
    assert config.check_ids[0] == "beamwatch.outbox"  # where the user put it


def test_monitor_checks_false_turns_the_built_in_checks_off():
    config = config_of("monitor: {checks: false}\nchecks:\n  - {id: a, pv: A}\n")
    assert config.check_ids == ["a"]
    with pytest.raises(ConfigError) as info:
        config_of("monitor: {checks: false}\nchecks:\n  - {id: a, pv: A}\n"
                  "channels: {ops: {kind: webhook, webhook_url: 'http://x/'}}\n"
                  "routes:\n  - {match: {group: beamwatch}, to: ['channel:ops']}\n")
    assert "no check has group 'beamwatch'" in str(info.value)


def test_checks_may_depend_on_and_routes_match_the_built_in_checks():
    config = config_of(
        "checks:\n  - {id: a, pv: A, above: {major: 1}, depends_on: [beamwatch.store]}\n"
        "channels: {ops: {kind: webhook, webhook_url: 'http://x/'}}\n"
        "routes:\n  - {match: {group: beamwatch}, to: ['channel:ops']}\n")
    assert config.check("a").depends_on_ids == ["beamwatch.store"]


@pytest.mark.parametrize(("entry", "line", "message"), [
    ("- {id: beamwatch.disk, internal: disk}",
     3, "checks[0].internal: unknown internal metric 'disk' (known: store, quarantine"),
    ("- {id: beamwatch.x, internal: store, pv: A}",
     3, "checks[0]: give exactly one input, not pv and internal"),
    ("- {id: mine, internal: store}",
     3, "checks[0]: an internal: check's id starts with 'beamwatch.'"),
    ("- {id: beamwatch.a, pv: A}",
     3, "checks[0]: ids starting with 'beamwatch.' are for beamwatch's own checks"),
    ("- {id: beamwatch.loop, source: ca}",
     3, "checks[0]: source: is for pv:, pva:, get:/post: and query: checks, not internal:"),
])
def test_bad_internal_checks_are_clear_errors_with_their_line(entry, line, message):
    with pytest.raises(ConfigError) as info:
        config_of(f"checks:\n  {entry}\n")
    text = str(info.value)
    assert f"bw.yaml:{line}:" in text and message in text
    assert "Traceback" not in text


def test_the_heartbeat_url_is_a_secret():
    config = config_of("monitor:\n  heartbeat: {url: '${HC}', every: 30s, "
                       "fail_url: '${HC}/fail'}\n", HC="https://hc-ping.com/0f3c-secret-uuid")
    beat = config.monitor.heartbeat
    assert beat.url.get() == "https://hc-ping.com/0f3c-secret-uuid" and beat.every == 30
    shown = f"{config!r} {dump_safe(config)}"
    assert "secret-uuid" not in shown
    with pytest.raises(ConfigError) as info:
        config_of("monitor:\n  heartbeat: {url: 'ftp://secret-host/x', every: 0s}\n")
    text = str(info.value)
    assert "monitor.heartbeat.url: must be an http:// or https:// URL" in text
    assert "monitor.heartbeat.every: must be more than 0s" in text
    assert "secret-host" not in text


# --- metrics -> samples -> checks ----------------------------------------------------------


@pytest.fixture
async def watched(tmp_path):
    """A real engine on a real SQLite store, beamwatch watching itself; fake clock."""
    clock = FakeClock()
    db = tmp_path / "bw.db"
    config = parse_config(CONFIG.format(db=db))
    store = Store(config.storage.url)
    source = SoftSource("ca", clock)
    engine = Engine(config, {"ca": source}, store, clock)
    monitor = SelfMonitor(config, engine, clock)
    engine.sources["internal"] = monitor.source
    await engine.start()
    yield engine, monitor, source, clock, db
    await engine.stop()
    await monitor.aclose()
    store.close()


async def step(engine, monitor, clock, seconds: float = 1.0) -> None:
    """What `run` does each second, by hand: time passes, beamwatch samples itself."""
    clock.advance(seconds)
    await monitor.health.refresh(clock.now())
    monitor.poll()
    engine.tick()
    await engine.flush()


def state(engine, check_id):
    s = engine.state_of(check_id)
    return s.severity, s.message


async def test_a_healthy_engine_shows_every_built_in_check_ok(watched):
    engine, monitor, source, clock, _ = watched
    source.push("FE04I-VA-01:P", 1e-9)
    source.push("BL04I-MO-DCM-01:TEMP1", 100.0)
    await step(engine, monitor, clock)
    for cid in BUILT_IN:
        assert engine.state_of(cid).severity == Severity.OK, cid
    assert engine.sample_of("beamwatch.store").value == 0.0
    assert monitor.health.verdict(clock.now()) == (True, "healthy")


async def test_a_store_that_refuses_writes_makes_beamwatch_store_major(watched):
    engine, monitor, source, clock, db = watched
    with sqlite3.connect(db) as conn:  # the store breaks under the engine
        conn.execute("ALTER TABLE alarm_states RENAME TO alarm_states_gone")
    source.push("FE04I-VA-01:P", 1e-3)  # a fault to store
    await engine.flush()
    await step(engine, monitor, clock, 10)
    assert state(engine, "beamwatch.store")[0] == Severity.OK  # 10 s: not yet
    healthy, why = monitor.health.verdict(clock.now())
    assert not healthy and "store failing for 10 s" in why  # the heartbeat stops at once
    await step(engine, monitor, clock, 21)
    severity, message = state(engine, "beamwatch.store")
    assert severity == Severity.MAJOR
    assert "store failing for 31 s: OperationalError: no such table" in message


async def test_an_undelivered_notification_raises_beamwatch_outbox(watched):
    engine, monitor, _, clock, _ = watched
    outbox = Outbox(engine.store)
    outbox.queue([{"dedup_key": "k1", "kind": "alarm", "receiver": "channel:ops",
                   "destination": "channel:ops", "created_at": clock.now(),
                   "next_attempt_at": clock.now(), "message": {"title": "x"}}])
    await step(engine, monitor, clock, 100)
    assert state(engine, "beamwatch.outbox")[0] == Severity.OK
    await step(engine, monitor, clock, 30)
    severity, message = state(engine, "beamwatch.outbox")
    assert severity == Severity.MINOR
    assert "1 notifications undelivered, the oldest due 130 s ago (to channel:ops)" in message
    await step(engine, monitor, clock, 500)
    assert state(engine, "beamwatch.outbox")[0] == Severity.MAJOR
    assert "outbox" not in monitor.health.verdict(clock.now())[1]  # 630 s: not yet stuck
    outbox.finish([outbox.rows()[0]["id"]], clock.now(), status="sent", ok=True)
    await step(engine, monitor, clock)
    assert state(engine, "beamwatch.outbox")[0] == Severity.OK


async def test_an_escalation_planned_for_later_is_not_late(watched):
    engine, monitor, _, clock, _ = watched
    Outbox(engine.store).queue([{
        "dedup_key": "esc", "kind": "escalation", "receiver": "channel:ops",
        "destination": "channel:ops", "created_at": clock.now(),
        "next_attempt_at": clock.now() + 900, "message": {"title": "x"}}])
    await step(engine, monitor, clock, 600)
    assert engine.sample_of("beamwatch.outbox").value == 0.0


async def test_permanent_failures_and_quarantined_rows_in_the_last_hour_are_minor(watched):
    engine, monitor, _, clock, _ = watched
    outbox = Outbox(engine.store)
    outbox.queue([{"dedup_key": "k1", "kind": "alarm", "receiver": "person:ana",
                   "destination": "person:ana/email", "created_at": clock.now(),
                   "next_attempt_at": clock.now(), "message": {"title": "x"}}])
    outbox.finish([outbox.rows()[0]["id"]], clock.now(), status="failed",
                  detail="550 no such mailbox")
    with engine.store.engine.begin() as conn:
        conn.execute(t.quarantine.insert().values(
            time=clock.now(), kind="transition", check_id="fe-vacuum",
            error="DataError: value too long", payload="{}"))
    await step(engine, monitor, clock)
    severity, message = state(engine, "beamwatch.delivery")
    assert severity == Severity.MINOR
    assert "1 notifications failed for good in the last hour; the last: person:ana/email: " \
           "550 no such mailbox" in message
    severity, message = state(engine, "beamwatch.quarantine")
    assert severity == Severity.MINOR and "DataError: value too long" in message
    await step(engine, monitor, clock, 3601)  # an hour later it is history
    assert state(engine, "beamwatch.delivery")[0] == Severity.OK
    assert state(engine, "beamwatch.quarantine")[0] == Severity.OK


async def test_most_channels_disconnected_is_major_after_30s(watched):
    engine, monitor, source, clock, _ = watched
    source.push("FE04I-VA-01:P", None, connected=False)
    source.push("BL04I-MO-DCM-01:TEMP1", 100.0)
    await step(engine, monitor, clock)
    assert engine.sample_of("beamwatch.ca").value == 50.0  # half: not more than half
    source.push("BL04I-MO-DCM-01:TEMP1", None, connected=False)
    await step(engine, monitor, clock)
    assert state(engine, "beamwatch.ca")[0] == Severity.OK  # for: 30s
    await step(engine, monitor, clock, 30)
    severity, message = state(engine, "beamwatch.ca")
    assert severity == Severity.MAJOR and "2 of 2 channels disconnected" in message


async def test_no_sample_for_five_minutes_is_major_and_beamwatch_own_do_not_count(watched):
    engine, monitor, source, clock, _ = watched
    source.push("FE04I-VA-01:P", 1e-9)
    await step(engine, monitor, clock, 0)  # seen within the second it came (run: 1 s polls)
    for _ in range(10):  # beamwatch samples itself meanwhile: that is no CA sample
        await step(engine, monitor, clock, 30)
    assert engine.sample_of("beamwatch.samples").value == 300.0
    assert state(engine, "beamwatch.samples")[0] == Severity.OK  # above 300 s, not at
    await step(engine, monitor, clock, 30)
    severity, message = state(engine, "beamwatch.samples")
    assert severity == Severity.MAJOR and "last sample 330 s ago (1 since start)" in message
    source.push("FE04I-VA-01:P", 2e-9)
    await step(engine, monitor, clock)
    assert state(engine, "beamwatch.samples")[0] == Severity.OK


async def test_event_loop_lag_is_minor_then_major_and_withholds_the_heartbeat(watched):
    engine, monitor, _, clock, _ = watched
    monitor.note_lag(2.0)
    await step(engine, monitor, clock)
    await step(engine, monitor, clock, 10)
    assert state(engine, "beamwatch.loop") == (
        Severity.MINOR, "2 above minor limit 1: the event loop ran 2.00 s late")
    monitor.note_lag(6.0)
    await step(engine, monitor, clock)
    assert not monitor.health.verdict(clock.now())[0]
    await step(engine, monitor, clock, 10)
    assert state(engine, "beamwatch.loop")[0] == Severity.MAJOR
    for _ in range(10):  # the worst of the last 5 s: it ages out
        monitor.note_lag(0.0)
    await step(engine, monitor, clock)
    assert monitor.health.verdict(clock.now()) == (True, "healthy")


async def test_without_a_self_monitor_the_internal_checks_have_no_opinion(tmp_path):
    clock = FakeClock()
    config = parse_config(CONFIG.format(db=tmp_path / "bw.db"))
    store = Store(config.storage.url)
    engine = Engine(config, {"ca": SoftSource("ca", clock)}, store, clock)
    await engine.start()  # no "internal" source: not an error
    clock.advance(3600)
    engine.tick()
    assert engine.state_of("beamwatch.store").severity == Severity.OK
    await engine.stop()
    store.close()


async def test_only_channel_access_counts_for_beamwatch_ca_and_samples(tmp_path):
    """A dead REST service is its own check's business: it must not make beamwatch.ca
    say "channels disconnected", and its polls are no evidence that CA is alive."""
    clock = FakeClock()
    config = parse_config(f"""
beamline: I04
storage: {{url: "sqlite:///{tmp_path / 'bw.db'}"}}
sources:
  gda: {{kind: http, base_url: "http://127.0.0.1:9"}}
checks:
  - {{id: fe-vacuum, pv: FE04I-VA-01:P, above: {{major: 1e-6}}}}
  - {{id: gda, source: gda, get: /api/status, json: state, when: "value != 'RUNNING'"}}
  - {{id: beamwatch.samples, above: {{major: 300}}}}
""")
    store = Store(config.storage.url)
    ca, gda = SoftSource("ca", clock), SoftSource("gda", clock)
    engine = Engine(config, {"ca": ca, "gda": gda}, store, clock)
    monitor = SelfMonitor(config, engine, clock)
    engine.sources["internal"] = monitor.source
    await engine.start()
    try:
        ca.push("FE04I-VA-01:P", 1e-9)
        gda.push("gda", None, connected=False)
        await step(engine, monitor, clock, 0)
        assert engine.sample_of("beamwatch.ca").value == 0.0  # 0 of 1 CA channels down
        for _ in range(11):  # GDA answers again, every 30 s; CA says nothing for 330 s
            gda.push("gda", "RUNNING")
            await step(engine, monitor, clock, 30)
        severity, message = state(engine, "beamwatch.samples")
        assert severity == Severity.MAJOR and "last sample 330 s ago" in message
    finally:
        await engine.stop()
        await monitor.aclose()
        store.close()
