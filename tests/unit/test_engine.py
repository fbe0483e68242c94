"""The engine end to end with the in-memory source and a real SQLite store."""

import asyncio
import math

import pytest

from beamwatch.api import service
from beamwatch.clock import FakeClock
from beamwatch.config import parse_config
from beamwatch.engine.engine import Engine
from beamwatch.model import Severity
from beamwatch.sources.soft import SoftSource
from beamwatch.store import Store

CONFIG = """
beamline: I04
storage: {{url: "sqlite:///{db}"}}
checks:
  - id: ring-current
    pv: SR-DI-DCCT-01:SIGNAL
    below: {{major: 10, minor: 200}}
    for: 30s
  - id: fe-shutter
    pv: FE04I-PS-SHTR-01:STA
    when: "value != 'Open' and ring_current > 10"
    latch: true
  - id: dcm-temp
    pv: BL04I-MO-DCM-01:TEMP1
    above: {{minor: 120, major: 140}}
    stale: 60s
"""


@pytest.fixture
def setup(tmp_path):
    clock = FakeClock()
    config = parse_config(CONFIG.format(db=tmp_path / "bw.db"))
    store = Store(config.storage.url)
    source = SoftSource("ca", clock)
    yield config, store, source, clock
    store.close()


async def start(config, store, source, clock):
    engine = Engine(config, {"ca": source}, store, clock)
    await engine.start()
    return engine


def severities(store):
    return {cid: s.severity for cid, s in store.load_states().items()}


async def test_threshold_crossed_after_delay_is_stored(setup):
    config, store, source, clock = setup
    engine = await start(config, store, source, clock)
    source.push("SR-DI-DCCT-01:SIGNAL", 300.0)
    source.push("SR-DI-DCCT-01:SIGNAL", 5.0)
    clock.advance(29)
    engine.tick()
    await engine.flush()
    assert store.transitions(check_id="ring-current") == []
    clock.advance(1)
    engine.tick()
    await engine.flush()
    [row] = store.transitions(check_id="ring-current")
    assert (row.transition.check_id, row.transition.old, row.transition.new) == (
        "ring-current", Severity.OK, Severity.MAJOR)
    assert row.transition.message == "5 below major limit 10"
    assert severities(store)["ring-current"] == Severity.MAJOR
    await engine.stop()


async def test_expression_reads_other_check_and_latch_survives_restart(setup):
    config, store, source, clock = setup
    engine = await start(config, store, source, clock)
    source.push("SR-DI-DCCT-01:SIGNAL", 300.0)
    source.push("FE04I-PS-SHTR-01:STA", "Closed")
    source.push("FE04I-PS-SHTR-01:STA", "Open")
    await engine.flush()
    assert store.load_states()["fe-shutter"].severity == Severity.MAJOR  # latched
    assert store.load_states()["fe-shutter"].current == Severity.OK
    await engine.stop()

    # restart: the latched alarm is still there, and an ack clears it
    engine2 = await start(config, store, SoftSource("ca", clock), clock)
    assert engine2.runtimes["fe-shutter"].logic.state.severity == Severity.MAJOR
    [tr] = engine2.acknowledge("fe-shutter", "ana")
    assert tr.new == Severity.OK and tr.actor == "ana"
    await engine2.stop()
    reasons = [r.transition.reason for r in store.transitions(check_id="fe-shutter")]
    assert reasons == ["evaluation", "evaluation", "ack"]


CHECKS = ("ring-current", "fe-shutter", "dcm-temp")


async def test_a_standby_takes_the_leaders_states_into_the_checks_it_built(setup):
    config, store, source, clock = setup
    standby = Engine(config, {"ca": SoftSource("ca", clock)}, store, clock)
    built = {cid: rt.check for cid, rt in standby.runtimes.items()}
    leader = await start(config, store, source, clock)
    source.push("SR-DI-DCCT-01:SIGNAL", 300.0)
    source.push("FE04I-PS-SHTR-01:STA", "Closed")  # latched MAJOR
    await leader.flush()
    clock.advance(600)  # the standby's own start is long past

    standby.restore_states()
    assert {cid: rt.check for cid, rt in standby.runtimes.items()} == built
    assert standby.state_of("fe-shutter").severity == Severity.MAJOR
    await standby.start()
    standby.sources["ca"].push("SR-DI-DCCT-01:SIGNAL", 300.0)
    standby.sources["ca"].push("FE04I-PS-SHTR-01:STA", "Open")
    clock.advance(9)  # within the grace after the takeover: dcm-temp has no value yet
    standby.tick()
    await standby.flush()
    assert {cid: standby.state_of(cid).severity for cid in CHECKS} == {
        "ring-current": Severity.OK, "fe-shutter": Severity.MAJOR, "dcm-temp": Severity.OK}
    [tr] = standby.acknowledge("fe-shutter", "ana")  # the leader's latch, cleared here
    assert (tr.old, tr.new) == (Severity.MAJOR, Severity.OK)
    await standby.stop()
    await leader.stop()


async def test_stale_detected_on_tick_without_samples(setup):
    config, store, source, clock = setup
    engine = await start(config, store, source, clock)
    source.push("BL04I-MO-DCM-01:TEMP1", 100.0)
    clock.advance(61)
    engine.tick()
    await engine.flush()
    [row] = store.transitions(check_id="dcm-temp")
    assert row.transition.new == Severity.INVALID
    assert row.transition.message.startswith("stale: no update for 61s")
    await engine.stop()


async def test_disconnect_after_grace_names_the_ioc(setup):
    config, store, source, clock = setup
    engine = await start(config, store, source, clock)
    source.push("BL04I-MO-DCM-01:TEMP1", 100.0)
    source.push("BL04I-MO-DCM-01:TEMP1", None, connected=False, server="10.0.0.4:5064")
    clock.advance(9)
    engine.tick()
    await engine.flush()
    assert store.transitions(check_id="dcm-temp") == []
    clock.advance(1)
    engine.tick()
    await engine.flush()
    [row] = store.transitions(check_id="dcm-temp")
    assert row.transition.message == "disconnected (IOC 10.0.0.4:5064)"
    await engine.stop()


async def test_reload_keeps_state_of_unchanged_and_applies_new_rules(setup, tmp_path):
    config, store, source, clock = setup
    engine = await start(config, store, source, clock)
    source.push("BL04I-MO-DCM-01:TEMP1", 130.0)
    await engine.flush()
    assert engine.runtimes["dcm-temp"].logic.state.severity == Severity.MINOR
    new_text = CONFIG.format(db=tmp_path / "bw.db").replace("minor: 120, major: 140",
                                                            "minor: 120, major: 125")
    report = engine.reload(parse_config(new_text))
    assert report["changed"] == ["dcm-temp"] and "ring-current" in report["kept"]
    await engine.flush()
    assert engine.runtimes["dcm-temp"].logic.state.severity == Severity.MAJOR
    await engine.stop()


async def test_store_failure_keeps_transitions_until_it_works(setup, monkeypatch):
    config, store, source, clock = setup
    engine = await start(config, store, source, clock)
    real = store.record
    calls = []

    def broken(*a, **k):
        calls.append(1)
        if len(calls) == 1:
            raise OSError("disk full")
        return real(*a, **k)

    monkeypatch.setattr(store, "record", broken)
    source.push("BL04I-MO-DCM-01:TEMP1", 150.0)
    await engine.flush()
    assert store.transitions() == [] and engine.stats.write_errors == 1
    await engine.flush()
    assert [r.transition.new for r in store.transitions()] == [Severity.MAJOR]
    await engine.stop()


async def test_latest_values_and_minute_history(setup):
    config, store, source, clock = setup
    clock.t = 1_790_000_040.0
    engine = await start(config, store, source, clock)
    for v in (100.0, 104.0, 101.0):
        source.push("BL04I-MO-DCM-01:TEMP1", v)
    clock.advance(60)
    source.push("BL04I-MO-DCM-01:TEMP1", 99.0)
    await engine.flush_values()
    assert store.latest()["dcm-temp"].value == 99.0
    [row] = store.history("dcm-temp", since=clock.t - 3600)
    assert (row["vmin"], row["vmax"], row["vlast"], row["count"]) == (100.0, 104.0, 101.0, 3)
    await engine.stop()


async def test_values_are_stored_in_chunks_and_an_outage_mid_way_loses_no_minute(
        setup, monkeypatch):
    """Each chunk is its own transaction (one holding the HA lease row for seconds
    blocked its renewal); what an outage left unstored is stored by the next flush."""
    from beamwatch.engine import engine as engine_module

    monkeypatch.setattr(engine_module, "WRITE_CHUNK", 1)
    config, store, source, clock = setup
    clock.t = 1_790_000_040.0
    engine = await start(config, store, source, clock)
    source.push("SR-DI-DCCT-01:SIGNAL", 300.0)
    source.push("BL04I-MO-DCM-01:TEMP1", 100.0)
    clock.advance(60)
    real, calls = store.save_history, []

    def second_chunk_fails(rows):
        calls.append([r["check_id"] for r in rows])
        if len(calls) == 2:
            raise OSError("disk full")
        real(rows)

    monkeypatch.setattr(store, "save_history", second_chunk_fails)
    await engine.flush_values()
    assert len(calls) == 2 and all(len(c) == 1 for c in calls)
    stored = [cid for cid in ("ring-current", "dcm-temp")
              if store.history(cid, since=clock.t - 3600)]
    assert stored == [calls[0][0]]
    await engine.flush_values()
    for cid in ("ring-current", "dcm-temp"):
        assert len(store.history(cid, since=clock.t - 3600)) == 1
    await engine.stop()


async def test_a_new_severity_is_stored_at_once_a_new_value_every_refresh(setup):
    """What `beamwatch status` (another process) and a standby read from the store."""
    from beamwatch.engine.engine import VALUE_REFRESH

    config, store, source, clock = setup
    engine = await start(config, store, source, clock)
    source.push("BL04I-MO-DCM-01:TEMP1", 100.0)
    await engine.flush_values()
    assert store.latest()["dcm-temp"].value == 100.0
    clock.advance(2)
    source.push("BL04I-MO-DCM-01:TEMP1", 101.0)  # still OK: waits for the refresh
    await engine.flush_values()
    assert store.latest()["dcm-temp"].value == 100.0
    assert engine.live_value("dcm-temp").value == 101.0  # this process's API reads it live
    rows = service.status(config, store, engine.live_value)
    assert {r.id: r.value for r in rows}["dcm-temp"] == 101.0
    clock.advance(2)
    source.push("BL04I-MO-DCM-01:TEMP1", 125.0)  # MINOR: stored with the next flush
    await engine.flush_values()
    latest = store.latest()["dcm-temp"]
    assert (latest.value, latest.severity) == (125.0, Severity.MINOR)
    clock.advance(2)
    source.push("BL04I-MO-DCM-01:TEMP1", 126.0)  # an alarm's new text is news too
    await engine.flush_values()
    assert store.latest()["dcm-temp"].message == "126 above minor limit 120"
    clock.advance(2)
    source.push("BL04I-MO-DCM-01:TEMP1", 100.0)  # OK again: at once
    source.push("BL04I-MO-DCM-01:TEMP1", 101.0)
    await engine.flush_values()
    assert store.latest()["dcm-temp"].value == 101.0
    clock.advance(2)
    source.push("BL04I-MO-DCM-01:TEMP1", 102.0)
    await engine.flush_values()
    assert store.latest()["dcm-temp"].value == 101.0
    clock.advance(VALUE_REFRESH)
    await engine.flush_values()  # no new sample, but the refresh is due
    latest = store.latest()["dcm-temp"]
    assert (latest.value, latest.message) == (102.0, "OK (102)")
    await engine.stop()


async def test_retention_purges_old_log_rows_only(setup):
    config, store, source, clock = setup
    engine = await start(config, store, source, clock)
    source.push("BL04I-MO-DCM-01:TEMP1", 150.0)
    await engine.flush()
    clock.advance(8 * 86400)
    source.push("BL04I-MO-DCM-01:TEMP1", 100.0)
    await engine.flush()
    done = store.purge(clock.now() - config.storage.retention)
    assert done["transitions"] == 1
    assert [r.transition.new for r in store.transitions()] == [Severity.OK]
    assert "dcm-temp" in store.load_states()
    await engine.stop()


async def test_history_is_purged_in_short_steps_and_newer_minutes_stay(setup):
    from beamwatch.app import purge_every

    config, store, source, clock = setup
    clock.t = 1_790_000_040.0
    engine = await start(config, store, source, clock)
    for _ in range(4):  # four minutes of history for two checks
        source.push("BL04I-MO-DCM-01:TEMP1", 100.0)
        source.push("SR-DI-DCCT-01:SIGNAL", 300.0)
        clock.advance(60)
    await engine.flush_values()
    before = clock.t - 120  # the first two minutes are older
    deleted = []
    while n := store.purge_history(before, limit=3):
        deleted.append(n)
    assert deleted == [2, 2]  # a minute at a time...
    store.save_history([dict(r, minute=r["minute"] - 10) for cid in ("dcm-temp", "ring-current")
                        for r in store.history(cid, since=0)])  # two old minutes again
    while n := store.purge_history(before, limit=1):
        deleted.append(n)
    assert deleted == [2, 2, 1, 1, 1, 1]  # ... and at most `limit` rows
    assert len(store.history("dcm-temp", since=clock.t - 3600)) == 2
    await engine.stop()
    # how often: a quarter of the retention, between a minute and an hour
    assert [purge_every(s) for s in (7 * 86400, 600, 60)] == [3600, 150, 60]


def test_status_worst_first_and_ack_without_an_engine_is_queued(setup):
    config, store, source, clock = setup

    async def scenario():
        engine = await start(config, store, source, clock)
        source.push("SR-DI-DCCT-01:SIGNAL", 300.0)
        source.push("BL04I-MO-DCM-01:TEMP1", 130.0)
        source.push("FE04I-PS-SHTR-01:STA", "Closed")
        await engine.stop()

    asyncio.run(scenario())
    rows = service.status(config, store)
    beamline = [r.id for r in rows if r.group != "beamwatch"]  # beamwatch.*: its own health
    assert beamline == ["fe-shutter", "dcm-temp", "ring-current"]
    assert rows[0].severity == "MAJOR" and "value != 'Open'" in rows[0].message
    result = service.acknowledge(config, store, "fe-shutter", "ben", now=clock.now())
    assert result.ok and result.queued and "no engine is running" in result.message
    assert store.load_states()["fe-shutter"].acked is False  # the engine applies it
    [cmd] = store.queued_commands()
    assert (cmd.verb, cmd.args, cmd.actor) == ("ack", {"check_id": "fe-shutter"}, "ben")
    assert not service.acknowledge(config, store, "nope", "ben").ok


async def test_quiet_samples_skip_judging_but_not_the_next_alarm_or_the_message(setup):
    config, store, source, clock = setup
    engine = await start(config, store, source, clock)
    dcm = engine.runtimes["dcm-temp"]
    ring = engine.runtimes["ring-current"]
    assert dcm.quick == (-math.inf, 120.0)
    assert ring.quick is None  # fe-shutter's `when:` reads ring_current
    source.push("BL04I-MO-DCM-01:TEMP1", 100.0)  # judged: the first verdict
    first = dcm.last_eval
    source.push("BL04I-MO-DCM-01:TEMP1", 119.5)  # quiet: taken without judging
    assert dcm.last_eval is first
    live = engine.live_value("dcm-temp")
    assert (live.value, live.message) == (119.5, "OK (119.5)")
    source.push("BL04I-MO-DCM-01:TEMP1", 120.5)  # out of the band: judged, alarms
    await engine.flush()
    assert severities(store)["dcm-temp"] == Severity.MINOR
    source.push("BL04I-MO-DCM-01:TEMP1", 100.0)  # back: judged (the check is not OK)
    await engine.flush()
    assert severities(store)["dcm-temp"] == Severity.OK
    source.push("BL04I-MO-DCM-01:TEMP1", float("nan"))  # never quiet
    await engine.flush()
    assert severities(store)["dcm-temp"] == Severity.INVALID
    await engine.stop()


async def test_a_check_without_a_value_is_not_judged_while_its_source_settles(setup):
    """A big start connects PVs for tens of seconds: no 'no value received' for a PV
    late in that wave, until the source says it has stopped connecting."""
    config, store, source, clock = setup
    settling = [True]
    source.settling = lambda: settling[0]
    engine = await start(config, store, source, clock)
    clock.advance(120)
    engine.tick()
    await engine.flush()
    assert severities(store) == {}
    settling[0] = False
    engine.tick()
    await engine.flush()
    assert set(severities(store).values()) == {Severity.INVALID}
    [tr, *_] = store.transitions()
    assert tr.transition.message == "no value received since start"
    await engine.stop()
