"""Heartbeats in and /healthz, served for real: `beamwatch run` as a process on a free
loopback port, real HTTP requests, the check's state read back through
`beamwatch status --json`; `/healthz` of a real App.run whose SQLite store another
connection locks; and a port already in use."""

from __future__ import annotations

import asyncio
import gc
import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from beamwatch.app import App
from beamwatch.web.server import for_app
from tests.support import waiting

pytestmark = pytest.mark.integration

BIN = Path(sys.executable).parent / "beamwatch"
TOKEN = "tok-7f3a9c"
CONFIG = """
beamline: TEST
storage: {{url: "sqlite:///{db}"}}
web: {{listen: "{listen}"}}
checks:
  - {{id: collector, heartbeat: 2s, token: "{token}"}}
  - {{id: beamwatch.store, above: {{major: 3}}}}
"""


def write_config(tmp_path: Path, listen: str = "127.0.0.1:0") -> Path:
    path = tmp_path / "bw.yaml"
    path.write_text(CONFIG.format(db=tmp_path / "bw.db", listen=listen, token=TOKEN))
    return path


def wait_for(predicate, what: str, limit: float = 60.0):
    return waiting.wait_for(predicate, limit, what)


class Running:
    """`beamwatch run` on port 0; its address read from what it prints."""

    def __init__(self, cfg: Path):
        self.cfg = cfg
        self.log = cfg.parent / "run.log"
        with open(self.log, "w") as out:  # a file: an unread pipe would stall the process
            self.proc = subprocess.Popen([str(BIN), "run", "-c", str(cfg)], stdout=out,
                                         stderr=subprocess.STDOUT, env=os.environ.copy())
        self.url = wait_for(self._url, "the HTTP API address in the output")

    def _url(self) -> str | None:
        assert self.proc.poll() is None, self.log.read_text()
        m = re.search(r"HTTP API on (http://\S+?);", self.log.read_text())
        return m.group(1) if m else None

    def collector(self) -> dict:
        out = subprocess.run([str(BIN), "status", "--json", "-c", str(self.cfg)],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        return next(c for c in json.loads(out.stdout)["checks"] if c["id"] == "collector")

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=30)


def test_beats_keep_a_check_ok_and_their_absence_makes_it_major(tmp_path):
    run = Running(write_config(tmp_path))
    try:
        beat = f"{run.url}/api/heartbeat/collector"
        with httpx.Client(timeout=10) as http:
            assert http.post(f"{run.url}/api/heartbeat/nope").status_code == 404
            assert http.post(f"{run.url}/api/heartbeat/beamwatch.store").status_code == 400
            wrong = http.post(beat, headers={"Authorization": "Bearer guess"}, content="x")
            assert wrong.status_code == 401 and TOKEN not in wrong.text

            # no beat yet (the wrong one was not recorded): MAJOR a period after start
            major = wait_for(lambda: (c := run.collector())["severity"] == "MAJOR"
                             and "above major limit 2" in c["message"] and c,
                             "collector MAJOR with no beat")
            assert "no beat since beamwatch started" in major["message"]

            def beat_then_status() -> dict:
                # a beat before each look: a 2 s period is shorter than a slow `status`
                ok = http.post(beat, headers={"Authorization": f"Bearer {TOKEN}"},
                               content="run 7 finished")
                assert ok.status_code == 200, ok.text
                return run.collector()

            # status' message is the latest value's, stored every 2 s: wait for both
            wait_for(lambda: (c := beat_then_status())["severity"] == "OK"
                     and "last beat" in c["message"] and "run 7 finished" in c["message"],
                     "collector OK after a beat, with the beat's message")

            # the beats stop: MAJOR again, saying when the last one came
            again = wait_for(lambda: (c := run.collector())["severity"] == "MAJOR"
                             and "above major limit 2" in c["message"] and c,
                             "collector MAJOR when the beats stop")
            assert "last beat" in again["message"] and "run 7 finished" in again["message"]

            wait_for(lambda: beat_then_status()["severity"] == "OK", "OK on the next beat")
            health = http.get(f"{run.url}/healthz")
            assert health.status_code == 200 and health.json()["status"] == "ok"
    finally:
        code = run.stop()
    assert code == 0  # SIGTERM: a clean stop, the web server included
    output = run.log.read_text()
    assert "Traceback" not in output and TOKEN not in output


def test_a_port_in_use_is_a_clear_error(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        cfg = write_config(tmp_path, listen=f"127.0.0.1:{port}")
        out = subprocess.run([str(BIN), "run", "-c", str(cfg)], capture_output=True,
                             text=True, timeout=60)
    assert out.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}: the port is already in use" in out.stderr
    assert "Traceback" not in out.stderr + out.stdout


@pytest.fixture
def gc_restored():
    """App.run tunes the collector for the sample churn; give the test process its own back."""
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


async def healthz_until(http: httpx.AsyncClient, url: str, code: int) -> dict:
    for _ in range(600):  # the limit only ends a broken run
        r = await http.get(url)
        if r.status_code == code:
            return r.json()
        await asyncio.sleep(0.1)
    raise AssertionError(f"/healthz never answered {code}")


async def test_healthz_says_503_while_the_store_is_locked(tmp_path, gc_restored):
    app = App(write_config(tmp_path))
    web = for_app(app)
    running = asyncio.create_task(app.run(services=[web.serve]))
    try:
        async with httpx.AsyncClient(timeout=10) as http:
            healthy = await healthz_until(http, f"{web.url}/healthz", 200)
            assert healthy == {"status": "ok", "reason": "healthy"}

            # another process takes the write lock (waiting for a write of the app's own
            # that may be in progress: its writer runs in a thread)
            lock = sqlite3.connect(tmp_path / "bw.db", isolation_level=None, timeout=10)
            lock.execute("BEGIN EXCLUSIVE")
            try:
                sick = await healthz_until(http, f"{web.url}/healthz", 503)
            finally:
                lock.rollback()
                lock.close()
            assert sick["status"] == "unhealthy"
            assert "store" in sick["reason"]  # e.g. "the store has not answered for 5 s"
            await healthz_until(http, f"{web.url}/healthz", 200)
    finally:
        app.stop()
        await running
    with pytest.raises(httpx.ConnectError):  # stopped with the app
        httpx.get(f"{web.url}/healthz", timeout=2)
