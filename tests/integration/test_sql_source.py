"""SQL checks against real databases: MariaDB (127.0.0.1:3306), PostgreSQL (pg_url) and
SQLite, each with an ISPyB-like data-collection queue table.

What a user would notice: the queue count is the check's value and crosses its threshold
when the queue fills; a query that hangs is cancelled ON THE SERVER at its timeout and its
check is disconnected with the reason while another check on the same source goes on;
writes are refused; the password is never shown; `beamwatch run` reports MAJOR."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from beamwatch.checks.evaluate import Check, CheckInput
from beamwatch.config import load_config
from beamwatch.config.schema import Config
from beamwatch.model import Sample, Severity
from beamwatch.sources.polled import ReadError
from beamwatch.sources.sql import SqlSource, make_engine, run_query
from beamwatch.store import Store
from tests.support import waiting

MARIADB = os.environ.get("BEAMWATCH_TEST_MARIADB", "mysql+pymysql://root@127.0.0.1:3306/test")
BIN = Path(sys.executable).parent / "beamwatch"
QUEUE = ("CREATE TABLE queue (queue_id INTEGER PRIMARY KEY, sample VARCHAR(40), "
         "status VARCHAR(20))")
PENDING = "SELECT count(*) AS pending FROM queue WHERE status = 'queued'"
HANG = {"mariadb": "SELECT SLEEP(30)", "postgresql": "SELECT pg_sleep(30)",
        # SQLite has no sleep: a query that never ends on its own
        "sqlite": "WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r) "
                  "SELECT count(*) FROM r"}


@pytest.fixture(params=["mariadb", "postgresql", "sqlite"])
def db(request, tmp_path) -> tuple[str, str]:
    """(backend, url) of an empty database with the queue table and three queued samples."""
    if request.param == "mariadb":
        url = request.getfixturevalue("mariadb_url")
    elif request.param == "postgresql":
        url = request.getfixturevalue("pg_url")
    else:
        url = f"sqlite:///{tmp_path / 'ispyb.sqlite'}"
    write(url, QUEUE)
    fill(url, 3)
    return request.param, url


def write(url: str, *statements: str) -> None:
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with engine.begin() as conn:
        for statement in statements:
            conn.exec_driver_sql(statement)
    engine.dispose()


def fill(url: str, n: int, start: int = 0) -> None:
    write(url, *(f"INSERT INTO queue VALUES ({start + i}, 'xtal-{start + i}', 'queued')"
                 for i in range(n)))


def config(url: str, checks: list[dict], **source) -> Config:
    return Config.model_validate({
        "beamline": "T", "sources": {"ispyb": {"kind": "sql", "url": url, **source}},
        "checks": [{"source": "ispyb", **c} for c in checks]})


def poll(source: SqlSource, config: Config, check_id: str) -> Sample:
    check = next(c for c in config.checks if c.id == check_id)
    return asyncio.run(_poll_once(source, check))


async def _poll_once(source, check):
    try:
        return await source.poll(check)
    finally:
        await source.close()


def test_queue_count_crosses_its_threshold_when_the_queue_fills(db):
    _, url = db
    cfg = config(url, [{"id": "queue", "query": PENDING, "column": "pending",
                        "above": {"minor": 50}}])
    check = Check(cfg.checks[0], ["queue"])
    inp = CheckInput(started=0.0)

    inp.update(poll(SqlSource("ispyb", cfg), cfg, "queue"))
    ok = check.evaluate(inp, time.time())
    assert (ok.severity, inp.sample.value) == (Severity.OK, 3)
    fill(url, 60, start=100)  # queue-stuck: samples are queued, none collected
    inp.update(poll(SqlSource("ispyb", cfg), cfg, "queue"))
    stuck = check.evaluate(inp, time.time())

    assert stuck.severity == Severity.MINOR
    assert inp.sample.value == 63 and "above minor limit 50" in stuck.message


@pytest.mark.parametrize("query,reason", [
    ("SELECT count(*) FROM no_such_table", "query failed:"),
    ("SELECT count(*) FRM queue", "query failed:"),
    ("SELECT queue_id FROM queue WHERE status = 'done'", "no row: the query returned nothing"),
])
def test_bad_queries_are_disconnected_with_the_databases_reason(db, query, reason):
    _, url = db
    cfg = config(url, [{"id": "bad", "query": query}])
    sample = poll(SqlSource("ispyb", cfg), cfg, "bad")
    assert not sample.connected and sample.error.startswith(reason)
    assert "\n" not in sample.error and "[SQL" not in sample.error  # one line, no SQL dump


def test_an_unknown_column_names_the_columns_there_are(db):
    _, url = db
    cfg = config(url, [{"id": "c", "query": PENDING, "column": "waiting"}])
    sample = poll(SqlSource("ispyb", cfg), cfg, "c")
    assert sample.error == "no column 'waiting' in the result (columns: pending)"


def test_writes_slipped_past_the_config_are_refused_by_the_database(db):
    """The load-time check is the first wall; the read-only transaction is the second."""
    backend, url = db
    cfg = config(url, [{"id": "q", "query": PENDING}])
    engine = make_engine(cfg.sources["ispyb"])
    try:
        for sneaky in ("DELETE FROM queue", "UPDATE queue SET status = 'done'",
                       "SELECT 1; DELETE FROM queue"):
            with pytest.raises(ReadError) as info:
                run_query(engine, sneaky, None, 5.0, [])
            assert "query failed" in str(info.value) or "read-only" in str(info.value)
    finally:
        engine.dispose()
    assert poll(SqlSource("ispyb", cfg), cfg, "q").value == 3  # nothing was deleted


def test_a_hanging_query_is_cancelled_on_the_server_while_another_check_polls(db):
    backend, url = db
    cfg = config(url, [{"id": "hangs", "query": HANG[backend], "timeout": "1s", "every": "1s"},
                       {"id": "queue", "query": PENDING, "every": "0.1s"}])
    got: list[Sample] = []
    asyncio.run(_run_until_hang_reported(SqlSource("ispyb", cfg), got))

    hung = next(s for s in got if s.address == "hangs")
    assert not hung.connected
    assert hung.error == "query cancelled after 1 s (statement timeout)"
    during = [s for s in got if s.address == "queue" and s.connected and s.value == 3]
    assert len(during) >= 3  # it kept polling while the other query hung
    assert still_sleeping(backend, url) == 0  # cancelled there, not just abandoned


async def _run_until_hang_reported(source: SqlSource, got: list[Sample]) -> None:
    reported = asyncio.Event()

    def sink(samples: list[Sample]) -> None:
        got.extend(samples)
        if any(s.address == "hangs" for s in samples):
            reported.set()

    source.subscribe(["hangs", "queue"])
    await source.start(sink)
    try:
        await asyncio.wait_for(reported.wait(), 20)
    finally:
        await source.stop()


def still_sleeping(backend: str, url: str) -> int:
    """Queries of ours that still run on the server."""
    engine = sa.create_engine(url if backend != "mariadb" else MARIADB,
                              poolclass=sa.pool.NullPool)
    with engine.connect() as conn:
        if backend == "postgresql":
            sql = ("SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep%%' "
                   "AND state = 'active'")
        elif backend == "mariadb":
            sql = ("SELECT count(*) FROM information_schema.processlist "
                   "WHERE info LIKE '%%SLEEP(30)%%' AND info NOT LIKE '%%processlist%%'")
        else:
            return 0  # in-process: the query ran in our thread, which has returned
        n = conn.exec_driver_sql(sql).scalar()
    engine.dispose()
    return n


def test_the_password_never_appears(tmp_path, mariadb_url, caplog):
    """A wrong password: the check says why it cannot connect, nothing shows the password."""
    secret = "s3cret-Pw-" + uuid.uuid4().hex[:8]
    (tmp_path / "ispyb.pw").write_text(secret + "\n")
    cfg_path = tmp_path / "bw.yaml"
    cfg_path.write_text(f"""
beamline: T
sources:
  ispyb: {{kind: sql, url: "{mariadb_url}", password_file: ispyb.pw, timeout: 3s}}
  leaky: {{kind: sql, url: "mysql+pymysql://root:{secret}@127.0.0.1:1/test", timeout: 3s}}
checks:
  - {{id: queue, source: ispyb, query: "{PENDING}"}}
  - {{id: down, source: leaky, query: "{PENDING}"}}
""")
    cfg = load_config(cfg_path)
    caplog.set_level(logging.DEBUG)
    denied = poll(SqlSource("ispyb", cfg), cfg, "queue")
    unreachable = poll(SqlSource("leaky", cfg), cfg, "down")

    assert denied.error.startswith("cannot connect: Access denied for user 'root'")
    assert unreachable.error.startswith("cannot connect: Can't connect to MySQL server")
    shown = [denied.error, unreachable.error, caplog.text, repr(cfg.sources),
             cfg.model_dump_json()]
    assert not any(secret in text for text in shown)


def test_the_database_coming_back_is_reconnected(tmp_path, pg_url):
    """pool_pre_ping: connections killed by a server restart are replaced on the next poll."""
    write(pg_url, QUEUE)
    fill(pg_url, 2)
    cfg = config(pg_url, [{"id": "q", "query": PENDING}])
    source = SqlSource("ispyb", cfg)

    async def scenario():
        first = await source.poll(cfg.checks[0])
        write(pg_url, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                      "WHERE datname = current_database() AND pid <> pg_backend_pid()")
        second = await source.poll(cfg.checks[0])
        await source.close()
        return first, second

    first, second = asyncio.run(scenario())
    assert (first.value, second.value, second.connected) == (2, 2, True)


def test_beamwatch_run_reports_the_stuck_queue_as_major(tmp_path, mariadb_url):
    write(mariadb_url, QUEUE)
    fill(mariadb_url, 3)
    cfg = tmp_path / "bw.yaml"
    cfg.write_text(f"""
beamline: TEST
storage: {{url: "sqlite:///{tmp_path / 'bw.db'}"}}
sources:
  ispyb: {{kind: sql, url: "{mariadb_url}"}}
checks:
  - {{id: queue, name: Collection queue, source: ispyb, query: "{PENDING}", every: 0.5s,
     above: {{minor: 20, major: 50}}}}
""")
    store = Store(f"sqlite:///{tmp_path / 'bw.db'}")  # the schema, before run and status
    proc = subprocess.Popen([str(BIN), "run", "-c", str(cfg)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        wait_for(lambda: "queue" in store.latest(), "the first poll stored")
        ok = wait_for(lambda: status(cfg).get("queue", {}).get("value") == 3 and status(cfg),
                      "the queue polled")
        assert ok["queue"]["severity"] == "OK"
        fill(mariadb_url, 60, start=100)
        stuck = wait_for(lambda: status(cfg)["queue"]["severity"] == "MAJOR" and status(cfg),
                         "the queue MAJOR")
        # the message is the transition's; the status `value` column follows later
        assert stuck["queue"]["message"] == "63 above major limit 50"
    finally:
        proc.send_signal(signal.SIGTERM)
        out = proc.communicate(timeout=30)[0]
    assert "Traceback" not in out, out


def status(cfg: Path) -> dict[str, dict]:
    return waiting.status_of(BIN, cfg)


def wait_for(predicate, what: str, timeout: float = 30.0):
    return waiting.wait_for(predicate, timeout, what)


def test_the_sims_queue_stuck_fault_fills_its_ispyb_queue(tmp_path):
    from beamwatch.sim import SimBeamline

    prefix = f"BWQ{uuid.uuid4().hex[:6].upper()}:"
    with SimBeamline(prefix=prefix, base_port=0, workdir=tmp_path / "sim") as sim:
        url = f"sqlite:///file:{sim.ispyb_path}?mode=ro&uri=true"
        cfg = config(url, [{"id": "queue", "query": "SELECT count(*) FROM ContainerQueueSample "
                                                    "WHERE status = 'queued'"}])

        def queued() -> int:
            return poll(SqlSource("ispyb", cfg), cfg, "queue").value

        assert queued() <= 3
        sim.fault("queue-stuck")
        wait_for(lambda: queued() > 20, "the queue filling")
        sim.clear()
        wait_for(lambda: queued() <= 3, "the backlog collected")
