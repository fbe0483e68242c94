"""A store that refuses or fails never stops the engine from storing and paging the rest.

The refusals here are the database's own: a SQLite trigger that aborts the
insert of one check's transitions (what PostgreSQL does with a value it
cannot take), and a real lock held by another connection.
"""

import asyncio
import sqlite3

import pytest
from sqlalchemy import text

from beamwatch.clock import FakeClock
from beamwatch.config import parse_config
from beamwatch.engine.engine import Engine
from beamwatch.engine.writer import Batch, BatchWriter
from beamwatch.model import AlarmState, Severity, Transition
from beamwatch.sources.soft import SoftSource
from beamwatch.store import Store
from beamwatch.store.store import KEY_MAX

CONFIG = """
beamline: I04
storage: {{url: "sqlite:///{db}"}}
checks:
  - id: bad
    pv: BAD
    above: {{major: 1}}
  - id: good
    pv: GOOD
    above: {{major: 1}}
  - id: slow
    pv: SLOW
    above: {{major: 1}}
    for: 5s
"""


@pytest.fixture
def setup(tmp_path):
    clock = FakeClock()
    config = parse_config(CONFIG.format(db=tmp_path / "bw.db"))
    store = Store(config.storage.url)
    source = SoftSource("ca", clock)
    yield config, store, source, clock
    store.close()


def refuse_check(store: Store, check_id: str) -> None:
    """The database refuses, for good, every transition of one check."""
    with store.engine.begin() as conn:
        conn.execute(text(
            f"CREATE TRIGGER refuse BEFORE INSERT ON transitions WHEN NEW.check_id = '{check_id}' "
            "BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"))


def logged(store: Store) -> list[str]:
    return [lt.transition.check_id for lt in store.transitions()]


async def test_a_refused_transition_is_quarantined_and_later_ones_are_stored(setup):
    config, store, source, clock = setup
    refuse_check(store, "bad")
    engine = Engine(config, {"ca": source}, store, clock)
    await engine.start()
    source.push("BAD", 5.0)
    source.push("GOOD", 5.0)  # same batch, decided together with the refused one
    await engine.flush()
    assert logged(store) == ["good"]
    [row] = store.quarantined()
    assert row["check_id"] == "bad" and "refused by the test" in row["error"]
    assert engine.stats.quarantined == 1
    # the store is not blocked: a later alarm is stored at once
    source.push("SLOW", 5.0)
    clock.advance(6)
    engine.tick()
    await engine.flush()
    assert logged(store) == ["good", "slow"]
    assert store.load_states()["slow"].severity == Severity.MAJOR
    await engine.stop()


async def test_a_locked_store_keeps_the_batches_and_retries_them_in_order(tmp_path):
    clock = FakeClock()
    config = parse_config(CONFIG.format(db=tmp_path / "bw.db"))
    store = Store(config.storage.url, busy_timeout=0.05)
    source = SoftSource("ca", clock)
    engine = Engine(config, {"ca": source}, store, clock)
    await engine.start()
    other = sqlite3.connect(tmp_path / "bw.db", isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")  # another process holds the database
    source.push("GOOD", 5.0)
    await engine.flush()
    source.push("BAD", 5.0)
    await engine.flush()
    assert engine.stats.store_failing_since is not None
    assert "locked" in engine.stats.store_last_error
    # deciding goes on while the store fails: a `for:` delay still fires on time
    source.push("SLOW", 5.0)
    clock.advance(6)
    engine.tick()
    assert engine.state_of("slow").severity == Severity.MAJOR
    other.execute("ROLLBACK")
    other.close()
    assert await engine.writer.drain()
    assert logged(store) == ["good", "bad", "slow"]
    assert engine.stats.store_failing_since is None and engine.stats.quarantined == 0
    await engine.stop()
    store.close()


async def test_a_permanently_failing_store_call_is_not_retried_for_ever(setup):
    config, store, _, clock = setup
    refuse_check(store, "bad")
    committed = []
    writer = BatchWriter(store, _run_now, clock.now, committed.append)
    bad = (Transition("bad", 1.0, Severity.OK, Severity.MAJOR, Severity.MAJOR, False, 5.0,
                      "", "threshold"), AlarmState("bad", Severity.MAJOR, Severity.MAJOR))
    note = {"dedup_key": "x/alarm", "kind": "alarm", "receiver": "person:ana",
            "destination": "person:ana/email", "message": {}, "created_at": 1.0,
            "transition_index": 0}
    writer.put(Batch([bad], [note]))
    assert await writer.drain()
    # the notification of the refused transition still reaches the outbox
    assert store.count("notifications") == 1 and store.count("quarantine") == 1


async def test_the_unwritten_queue_is_bounded_and_keeps_what_pages(setup):
    _, store, _, clock = setup
    writer = BatchWriter(store, _run_now, clock.now, max_rows=3)

    def batch(cid: str, notes: list[dict]) -> Batch:
        tr = Transition(cid, 1.0, Severity.OK, Severity.MAJOR, Severity.MAJOR, False, 5.0, "",
                        "threshold")
        return Batch([(tr, AlarmState(cid, Severity.MAJOR, Severity.MAJOR))], notes)

    page = {"dedup_key": "p/alarm", "kind": "alarm", "receiver": "person:ana",
            "destination": "person:ana/email", "message": {}, "created_at": 1.0,
            "transition_index": 0}
    writer.put(batch("paged", [page]))
    for i in range(5):
        writer.put(batch(f"quiet{i}", []))
    assert writer.unwritten == 3 and writer.stats.dropped == 3
    assert await writer.drain()
    assert logged(store) == ["paged", "quiet3", "quiet4"]


def test_long_dedup_keys_fit_their_column_and_stay_distinct(setup):
    _, store, _, _ = setup
    base = "i" * 400
    rows = [{"dedup_key": f"{base}/{n}", "kind": "alarm", "receiver": "person:ana",
             "destination": "person:ana/email", "message": {}, "created_at": 1.0}
            for n in ("a", "b")]
    store.record([], rows)
    with store.engine.connect() as conn:
        keys = [r[0] for r in conn.execute(text("SELECT dedup_key FROM notifications"))]
    assert len(set(keys)) == 2 and all(len(k) <= KEY_MAX for k in keys)


async def _run_now(fn, *args):
    return await asyncio.to_thread(fn, *args)
