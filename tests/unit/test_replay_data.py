"""Replay reads the connection and the record's EPICS severity as data (value_history
columns since migration 0004), never out of message text: a live run (a real App,
SoftSource, FakeClock, dry notifiers) writes the log, the same config is replayed."""

from __future__ import annotations

import asyncio
import shutil

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, select

from beamwatch.api.replay import BOTH, replay
from beamwatch.api.replay.reconstruct import _minute_edges, _outages
from beamwatch.checks import evaluate
from beamwatch.config import load_config
from beamwatch.engine.history import MinuteHistory
from beamwatch.model import Sample, Severity
from beamwatch.store import Store
from beamwatch.store import tables as t
from beamwatch.store.migrate import HEAD, alembic_config, upgrade
from tests.support.live_log import run_live

T0 = 1_789_999_980.0  # a whole minute
LIVE_FOR = 1200
IOC_PV, DET_PV = "BL04I-EA-IOC-01:HB", "BL04I-EA-DET-01:T"
LOST, BACK = 605, 785  # the IOC's PV is away three minutes
MAJOR_FROM, MAJOR_UNTIL = 310, 550  # the detector record is in MAJOR alarm

CONFIG = """
beamline: I04
storage: {url: "sqlite:///{db}"}
channels:
  hook: {kind: webhook, webhook_url: "http://127.0.0.1:9/hook"}
checks:
  - id: ioc-heartbeat
    pv: BL04I-EA-IOC-01:HB
    above: {major: 100}
  - id: det-temp
    pv: BL04I-EA-DET-01:T
routes:
  - to: [channel:hook]
"""


def live_script(t: int) -> list[tuple[str, float | None, bool, Severity]]:
    """(pv, value, connected, record severity) pushed at second t of the live run."""
    out = []
    if t == LOST:
        out.append((IOC_PV, None, False, Severity.INVALID))
    if t % 10 == 0 and not LOST <= t < BACK or t == BACK:
        out.append((IOC_PV, 5.0, True, Severity.OK))
    if t % 10 == 0:
        record = Severity.MAJOR if MAJOR_FROM <= t < MAJOR_UNTIL else Severity.OK
        out.append((DET_PV, 20.0, True, record))
    return out


def live_log(folder):
    path = folder / "bw.yaml"
    path.write_text(CONFIG.replace("{db}", str(folder / "bw.db")))
    asyncio.run(run_live(path, T0, LIVE_FOR, live_script))
    return path, load_config(path)


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    return live_log(tmp_path_factory.mktemp("live"))


def replayed(path, config, url=None):
    store = Store(url or config.storage.url, migrate=False)
    try:
        return replay(config, store, T0, T0 + LIVE_FOR, config_path=path)
    finally:
        store.close()


def table(report) -> list[tuple[str, str, str]]:
    return [(r.check_id, r.kind, r.verdict) for r in report.rows]


def messages(config) -> list[str]:
    store = Store(config.storage.url, migrate=False)
    try:
        return [lt.transition.message for lt in store.transitions()]
    finally:
        store.close()


def test_a_disconnection_and_a_record_alarm_replay_as_they_happened_live(live):
    path, config = live
    report = replayed(path, config)
    assert sorted(table(report)) == [
        ("det-temp", "alarm", BOTH), ("det-temp", "resolve", BOTH),
        ("ioc-heartbeat", "alarm", BOTH), ("ioc-heartbeat", "resolve", BOTH)]
    alarm = {r.check_id: r for r in report.rows if r.kind == "alarm"}
    # the times come from the stored data, to the second for the edges the log records
    assert abs(alarm["ioc-heartbeat"].new.time - alarm["ioc-heartbeat"].old.time) <= 1
    assert abs(alarm["det-temp"].new.time - alarm["det-temp"].old.time) <= 1
    assert alarm["det-temp"].old.severity == "MAJOR" == alarm["det-temp"].new.severity
    assert not any("0004" in note for note in report.notes)


def test_rewording_the_messages_does_not_change_the_replay(live, tmp_path, monkeypatch):
    """The log written with other words for a disconnection and a record alarm replays
    to the same notifications: replay reads data, not text."""
    monkeypatch.setattr(evaluate, "_disconnected_text", lambda sample: "lost contact")

    def reworded(sample):
        severity, _ = real_record_alarm(sample)
        return severity, f"the IOC's record says {severity.name.lower()}"

    real_record_alarm = evaluate._record_alarm
    monkeypatch.setattr(evaluate, "_record_alarm", reworded)
    path, config = live_log(tmp_path)
    said = messages(config)
    assert "lost contact" in said and "the IOC's record says major" in said
    assert not any(m.startswith(("disconnected", "record alarm")) for m in said)
    before = replayed(*live)
    after = replayed(path, config)
    assert table(after) == table(before)
    assert all(verdict == BOTH for _, _, verdict in table(after)) and len(after.rows) == 4


def test_a_log_from_before_0004_replays_and_says_what_it_cannot_know(live, tmp_path):
    path, config = live
    old = tmp_path / "old.db"
    shutil.copy(config.storage.url.split(":///", 1)[1], old)
    eng = create_engine(f"sqlite:///{old}")
    command.downgrade(alembic_config(eng), "0003")
    eng.dispose()
    report = replayed(path, config, url=f"sqlite:///{old}")
    assert any("predates schema 0004" in note for note in report.notes)
    # what the log cannot say is not guessed: no disconnection, no record alarm
    assert {(c, k, v) for c, k, v in table(report)} == {
        ("det-temp", "alarm", "only old"), ("det-temp", "resolve", "only old"),
        ("ioc-heartbeat", "alarm", "only old"), ("ioc-heartbeat", "resolve", "only old")}
    eng = create_engine(f"sqlite:///{old}")
    upgrade(eng)  # the old rows are there, without the data: said per check
    eng.dispose()
    report = replayed(path, config, url=f"sqlite:///{old}")
    note = next(n for n in report.notes if "before schema 0004" in n)
    assert "det-temp" in note and "ioc-heartbeat" in note


# --- migration 0004 ----------------------------------------------------------------------------


def test_migration_0004_upgrades_a_log_at_0003_with_data_in_it(tmp_path):
    eng = create_engine(f"sqlite:///{tmp_path / 'm.db'}")
    upgrade(eng, "0003")
    with eng.begin() as conn:
        conn.execute(t.value_history.insert().values(
            check_id="dcm-temp", minute=29_833_333, vmin=1.0, vmax=2.0, vlast=2.0, count=3))
        conn.execute(t.latest_values.insert().values(
            check_id="dcm-temp", time=T0, value=2.0, severity=0, connected=True))
    upgrade(eng)
    with eng.connect() as conn:
        assert MigrationContext.configure(conn).get_current_revision() == HEAD
        assert compare_metadata(MigrationContext.configure(conn), t.metadata) == []
        row = conn.execute(select(t.value_history)).mappings().one()
        assert (row["vmin"], row["vmax"], row["vlast"], row["count"]) == (1.0, 2.0, 2.0, 3)
        assert row["connected"] is None and row["record_severity"] is None  # not recorded
        assert conn.execute(select(t.latest_values.c.value)).scalar_one() == 2.0
    eng.dispose()
    store = Store(f"sqlite:///{tmp_path / 'm.db'}")
    store.save_history([{"check_id": "dcm-temp", "minute": 29_833_334, "vmin": None,
                         "vmax": None, "vlast": None, "count": 0, "connected": False,
                         "lost_at": T0 + 65, "back_at": None, "record_severity": None,
                         "record_severity_at": None, "record_severity_last": None}])
    rows = store.history("dcm-temp", since=0)
    assert [(r["count"], r["connected"], r["lost_at"]) for r in rows] == [
        (3, None, None), (0, False, T0 + 65)]
    store.close()


# --- the pieces --------------------------------------------------------------------------------


def sample(value, connected=True, severity=Severity.OK) -> Sample:
    return Sample("PV", value, 0.0, 0.0, connected, severity)


def test_a_minute_row_records_connection_and_record_severity():
    h = MinuteHistory()
    h.add("c", sample(1.0), T0 + 1)
    h.add("c", sample(3.0, severity=Severity.MAJOR), T0 + 10)
    h.add("c", sample(2.0, severity=Severity.MINOR), T0 + 20)
    h.add("c", sample(None, connected=False), T0 + 30)
    h.add("c", sample(None, connected=False), T0 + 35)  # still away: the first loss counts
    h.add("c", sample(None, connected=False), T0 + 90)  # away all the next minute
    h.add("c", sample(5.0), T0 + 200)  # back two minutes later
    first, away, back = h.take(T0 + 600)
    assert (first["vmin"], first["vmax"], first["vlast"], first["count"]) == (1.0, 3.0, 2.0, 3)
    assert (first["connected"], first["lost_at"], first["back_at"]) == (False, T0 + 30, None)
    assert (first["record_severity"], first["record_severity_at"],
            first["record_severity_last"]) == (2, T0 + 10, 1)
    assert (away["count"], away["connected"], away["lost_at"], away["vlast"]) == (
        0, False, None, None)
    assert (back["connected"], back["lost_at"], back["back_at"], back["vlast"]) == (
        True, None, T0 + 200, 5.0)


async def test_sliced_take_closes_each_finished_minute_once_while_samples_come_in():
    """The engine takes a minute's rows in slices, yielding to the loop: a check whose
    next minute began meanwhile has its row closed by `add`, not a second time."""
    h = MinuteHistory()
    for i in range(5):
        h.add(f"c{i}", sample(float(i)), T0 + 1)
    assert await h.take_sliced(T0 + 30, step=2) == []  # the minute is not over
    taking = asyncio.ensure_future(h.take_sliced(T0 + 61, step=2))
    await asyncio.sleep(0)  # the first slice is closed: c0, c1
    h.add("c3", sample(30.0), T0 + 62)  # c3's next minute begins before its slice
    rows = await taking
    assert sorted((r["check_id"], r["minute"], r["vlast"]) for r in rows) == [
        (f"c{i}", int(T0 // 60), float(i)) for i in range(5)]
    assert await h.take_sliced(T0 + 90) == []  # nothing more until the next minute
    [last] = await h.take_sliced(T0 + 200)
    assert (last["check_id"], last["vlast"]) == ("c3", 30.0)


def test_the_minute_edges_come_out_exact_for_a_loss_and_a_return():
    row = {"minute": 10, "connected": True, "lost_at": 605.0, "back_at": 640.0}
    assert _minute_edges(True, row) == [(605.0, False), (640.0, True)]
    assert _minute_edges(False, dict(row, lost_at=None)) == [(640.0, True)]
    assert _minute_edges(False, dict(row, connected=False, lost_at=650.0)) == [
        (640.0, True), (650.0, False)]
    assert _minute_edges(True, dict(row, connected=False, back_at=None)) == [(605.0, False)]
    before = {"minute": 9, "connected": True, "lost_at": None, "back_at": None}
    rows = [{"minute": 10, "connected": False, "lost_at": 605.0, "back_at": None},
            {"minute": 13, "connected": True, "lost_at": None, "back_at": 785.0},
            {"minute": 14, "connected": None}]  # a row from before 0004: connected
    assert _outages(before, rows) == [(605.0, 785.0)]
    assert _outages(dict(before, connected=False, lost_at=500.0), rows[2:]) == [
        (500.0, 840.0)]
