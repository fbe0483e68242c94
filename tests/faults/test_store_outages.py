"""The store goes away, locks up or refuses a row: `beamwatch run` keeps deciding on time,
pages exactly once when it can store again, and never stops for good.

Real processes: a softIoc, `beamwatch run`, a private PostgreSQL cluster that the test
stops with `pg_ctl stop -m immediate`, a second process holding a SQLite lock.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from beamwatch.store import Store
from tests.integration.test_run_process import BIN, DB, cli, wait_for

pytestmark = pytest.mark.integration


def write_config(tmp_path: Path, ioc, hook_url: str, url: str) -> Path:
    cfg = tmp_path / "bw.yaml"
    checks = "".join(f"""
  - id: temp-{i}
    pv: {ioc.pv(f"T{i}")}
    above: {{major: 10}}
""" for i in (1, 2, 3))
    cfg.write_text(f"""
beamline: TEST
storage: {{url: "{url}"}}
web: {{listen: "off"}}  # no HTTP API needed here (tests may run side by side)
sources: {{ca: {{kind: ca, addr_list: ["{ioc.addr}"]}}}}
checks:{checks}
channels:
  hook: {{kind: webhook, webhook_url: "{hook_url}"}}
routes:
  - match: {{check: [temp-1, temp-2, temp-3]}}
    to: [channel:hook]
""")
    return cfg


def start(cfg: Path, ioc) -> subprocess.Popen:
    """`beamwatch run`, its output to a file: an unread pipe would stall a chatty process."""
    log = open(cfg.parent / "run.log", "w")  # noqa: SIM115 - closed with the process
    env = {**os.environ, **ioc.client_env}
    proc = subprocess.Popen([str(BIN), "run", "-c", str(cfg)], env=env, stdout=log,
                            stderr=subprocess.STDOUT, text=True)
    proc.log_path = cfg.parent / "run.log"
    return proc


def stop(proc: subprocess.Popen) -> str:
    proc.terminate()
    proc.wait(timeout=60)
    return proc.log_path.read_text()


def pages(hook, check_id: str) -> list[dict]:
    return [m for m in hook.got if m["kind"] == "alarm" and check_id in m["check_ids"]]


def caput(ioc, name: str, value: float) -> None:
    ioc.command(f"dbpf {ioc.pv(name)} {value}")


def settle(seconds: float) -> None:
    """Time for a duplicate to show up, if one were coming."""
    time.sleep(seconds)


def test_postgres_down_for_30_s_during_a_fault_pages_once_after(
        tmp_path, ioc_factory, hook, pg_cluster):
    ioc = ioc_factory(DB)
    cfg = write_config(tmp_path, ioc, hook.url, pg_cluster.url)
    hook.up = True
    proc = start(cfg, ioc)
    try:
        store = Store(pg_cluster.url, schema="test")  # beamline TEST's schema
        wait_for(lambda: len(store.latest()) >= 3, what="all PVs connected")
        store.close()
        pg_cluster.stop("immediate")
        caput(ioc, "T1", 50.0)  # the fault, while nothing can be stored
        time.sleep(30)
        assert pages(hook, "temp-1") == []  # nothing is sent before it is stored
        assert proc.poll() is None, "beamwatch run died while PostgreSQL was down"
        pg_cluster.start()
        wait_for(lambda: pages(hook, "temp-1"), timeout=30, what="the page after recovery")
        settle(5)
        assert len(pages(hook, "temp-1")) == 1
        store = Store(pg_cluster.url, schema="test")  # beamline TEST's schema
        assert [t.transition.check_id for t in store.transitions()
                if t.transition.check_id == "temp-1"] == ["temp-1"]
        store.close()
    finally:
        out = stop(proc)
    assert "Traceback" not in out


LOCKER = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
conn.execute("ROLLBACK")
"""


def test_sqlite_locked_by_another_process_for_40_s_pages_once_after(
        tmp_path, ioc_factory, hook):
    ioc = ioc_factory(DB)
    db = tmp_path / "bw.db"
    cfg = write_config(tmp_path, ioc, hook.url, f"sqlite:///{db}")
    hook.up = True
    proc = start(cfg, ioc)
    try:
        store = Store(f"sqlite:///{db}")
        wait_for(lambda: len(store.latest()) >= 3, what="all PVs connected")
        locker = subprocess.Popen([sys.executable, "-c", LOCKER, str(db), "40"],
                                  stdout=subprocess.PIPE, text=True)
        assert locker.stdout.readline().strip() == "locked"
        caput(ioc, "T2", 50.0)
        locker.wait(timeout=60)
        assert proc.poll() is None, "beamwatch run died while the database was locked"
        wait_for(lambda: pages(hook, "temp-2"), timeout=45, what="the page after the lock")
        settle(5)
        assert len(pages(hook, "temp-2")) == 1
        # the beamline log holds the fault once
        assert [t.transition.check_id for t in store.transitions(check_id="temp-2")] == ["temp-2"]
        store.close()
    finally:
        out = stop(proc)
    assert "Traceback" not in out


def test_a_row_refused_for_good_is_quarantined_and_later_faults_page(
        tmp_path, ioc_factory, hook):
    ioc = ioc_factory(DB)
    db = tmp_path / "bw.db"
    cfg = write_config(tmp_path, ioc, hook.url, f"sqlite:///{db}")
    store = Store(f"sqlite:///{db}")  # the schema, then a database that refuses temp-1
    with store.engine.begin() as conn:
        conn.execute(text(
            "CREATE TRIGGER refuse BEFORE INSERT ON transitions WHEN NEW.check_id = 'temp-1' "
            "BEGIN SELECT RAISE(ABORT, 'refused'); END"))
    hook.up = True
    proc = start(cfg, ioc)
    try:
        wait_for(lambda: len(store.latest()) >= 3, what="all PVs connected")
        caput(ioc, "T1", 50.0)
        wait_for(lambda: store.quarantined(), what="the refused transition quarantined")
        caput(ioc, "T3", 50.0)
        wait_for(lambda: pages(hook, "temp-3"), what="a later fault paged")
        [row] = store.quarantined()
        assert row["check_id"] == "temp-1" and "refused" in row["error"]
        # the refused transition still paged: its notification was stored on its own
        wait_for(lambda: pages(hook, "temp-1"), what="the refused transition's page")
        status = cli(cfg, "status", "--json")
        assert status.returncode == 0, status.stderr
    finally:
        out = stop(proc)
        store.close()
    assert "Traceback" not in out


def test_sigterm_during_a_slow_send_sends_nothing_twice_after_a_restart(
        tmp_path, ioc_factory, httpserver):
    """The send in flight gets its grace, is recorded, and a restart does not repeat it."""
    import threading

    from werkzeug import Response

    got: list[dict] = []
    arrived = threading.Event()

    def slow(request):
        arrived.set()
        time.sleep(3)  # within the worker's 5 s grace at stop
        got.append(json.loads(request.data))
        return Response("ok")

    httpserver.expect_request("/slow", method="POST").respond_with_handler(slow)
    ioc = ioc_factory(DB)
    db = tmp_path / "bw.db"
    cfg = write_config(tmp_path, ioc, httpserver.url_for("/slow"), f"sqlite:///{db}")
    store = Store(f"sqlite:///{db}")
    proc = start(cfg, ioc)
    try:
        wait_for(lambda: len(store.latest()) >= 3, what="all PVs connected")
        caput(ioc, "T1", 50.0)
        assert arrived.wait(20), "the page never reached the receiver"
        proc.send_signal(signal.SIGTERM)  # while the receiver is still answering
        assert proc.wait(timeout=30) == 0
        proc = start(cfg, ioc)
        wait_for(lambda: len(store.latest()) >= 3, what="connected again")
        settle(5)  # a resend, if one were coming
    finally:
        out = stop(proc)
        store.close()
    assert [m["check_ids"] for m in got if m["kind"] == "alarm"] == [["temp-1"]]
    assert "Traceback" not in out
