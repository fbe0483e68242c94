"""The outbound heartbeat (dead-man's switch) against a real HTTP receiver, with a real
`App.run` on a real SQLite store that another connection locks (issue 12, item 12).

While beamwatch is healthy the receiver gets pings on the heartbeat URL; while the
store is locked they go to `fail_url` instead and `beamwatch.store` goes MAJOR; once
the lock is gone the pings come back and the alarm is in the beamline log."""

from __future__ import annotations

import asyncio
import gc
import logging
import sqlite3
import threading

import pytest
from pytest_httpserver import HTTPServer

from beamwatch.app import App
from beamwatch.model import Severity
from beamwatch.sources.soft import SoftSource

pytestmark = pytest.mark.integration

SECRET = "sekret-uuid-4f1c"
CONFIG = """
beamline: I04
storage: {{url: "sqlite:///{db}"}}
checks:
  - {{id: fe-vacuum, pv: FE04I-VA-01:P, above: {{major: 1e-6}}}}
  - {{id: beamwatch.store, above: {{major: 3}}}}   # sooner than the default 30 s
monitor:
  heartbeat:
    url: "{base}/ping/{secret}"
    fail_url: "{base}/ping/{secret}/fail"
    every: 200ms
    timeout: 2s
"""


class Receiver:
    """The outside service (Healthchecks): remembers which URL each ping hit."""

    def __init__(self, server: HTTPServer):
        self.paths: list[str] = []
        self._changed = threading.Condition()
        for path in (f"/ping/{SECRET}", f"/ping/{SECRET}/fail"):
            server.expect_request(path).respond_with_handler(self._record)

    def _record(self, request):
        from werkzeug import Response

        with self._changed:
            self.paths.append("fail" if request.path.endswith("/fail") else "ok")
            self._changed.notify_all()
        return Response("OK")

    async def wait(self, predicate, what: str) -> None:
        def until() -> bool:
            with self._changed:
                return self._changed.wait_for(lambda: predicate(self.paths), timeout=60)

        assert await asyncio.to_thread(until), f"the receiver never got {what}: {self.paths}"


async def until(predicate, what: str) -> None:
    """Wait for engine state (no event to wait on); the limit only ends a broken run."""
    for _ in range(600):
        if await asyncio.to_thread(predicate):
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"never: {what}")


@pytest.fixture
def gc_restored():
    """App.run tunes the collector for the sample churn; give the test process its own back."""
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


async def test_pings_only_while_healthy_and_a_locked_store_is_major(
        tmp_path, httpserver: HTTPServer, caplog, gc_restored):
    caplog.set_level(logging.DEBUG)
    db = tmp_path / "bw.db"
    path = tmp_path / "bw.yaml"
    path.write_text(CONFIG.format(db=db, base=httpserver.url_for("").rstrip("/"),
                                  secret=SECRET))
    receiver = Receiver(httpserver)
    app = App(path, sources={"ca": SoftSource("ca")})
    running = asyncio.create_task(app.run())
    try:
        await receiver.wait(lambda p: p.count("ok") >= 3, "pings while healthy")
        assert "fail" not in receiver.paths

        lock = sqlite3.connect(db, isolation_level=None, timeout=0)
        lock.execute("BEGIN EXCLUSIVE")  # another process holds the write lock
        locked_at = len(receiver.paths)
        await receiver.wait(lambda p: p[locked_at:].count("fail") >= 3, "fail pings")
        await until(lambda: app.engine.state_of("beamwatch.store").severity == Severity.MAJOR,
                    "beamwatch.store MAJOR")
        message = app.engine.state_of("beamwatch.store").message
        assert "the store has not answered for" in message
        failing = receiver.paths[locked_at:]
        first_fail = failing.index("fail")
        assert "ok" not in failing[first_fail:]  # no "all well" while the store is stuck
        lock.rollback()
        lock.close()

        unlocked_at = len(receiver.paths)
        await receiver.wait(lambda p: "ok" in p[unlocked_at:], "pings after the store is back")
        await until(lambda: any(tr.transition.new == Severity.MAJOR
                                for tr in app.store.transitions(check_id="beamwatch.store")),
                    "the beamwatch.store alarm in the beamline log")
    finally:
        app.stop()
        await running
    ours = [r.getMessage() for r in caplog.records if not r.name.startswith("werkzeug")]
    assert any("heartbeat withheld" in m for m in ours)  # the log says why, not where
    assert not [m for m in ours if SECRET in m]  # the heartbeat URL is a secret
