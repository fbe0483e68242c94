"""Under systemd (Type=notify, WatchdogSec=): a running App says READY=1 once started
and WATCHDOG=1 from each tick that ran — a real unix datagram socket stands in for
systemd, bound where NOTIFY_SOCKET says."""

from __future__ import annotations

import asyncio
import gc
import socket

import pytest

from beamwatch.app import App
from beamwatch.sources.soft import SoftSource
from beamwatch.systemd import Notifier

CONFIG = """
beamline: I04
storage: {{url: "sqlite:///{db}"}}
web: {{listen: "off"}}
monitor: {{checks: false}}
checks:
  - {{id: dcm-temp, pv: "DCM:T", above: {{major: 140}}}}
people:
  ana: {{name: Ana Lima, webhook: "http://127.0.0.1:9/ana"}}
teams:
  mx: {{members: [ana], rota: {{start: "2026-01-01T08:00", order: [ana]}}}}
"""


@pytest.fixture
def systemd(tmp_path, monkeypatch):
    """A datagram socket bound as NOTIFY_SOCKET, non-blocking for the event loop."""
    path = str(tmp_path / "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.setblocking(False)
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    yield sock
    sock.close()


@pytest.fixture
def gc_restored():
    """App.run tunes the collector for the sample churn; give the test process its own back."""
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


async def receive(sock: socket.socket) -> str:
    async with asyncio.timeout(30):
        return (await asyncio.get_running_loop().sock_recv(sock, 4096)).decode()


def write_config(tmp_path):
    path = tmp_path / "bw.yaml"
    path.write_text(CONFIG.format(db=tmp_path / "bw.db"))
    return path


async def test_a_running_app_says_ready_then_pings_the_watchdog(tmp_path, systemd, gc_restored):
    app = App(write_config(tmp_path), sources={"ca": SoftSource("ca")})
    running = asyncio.create_task(app.run())
    try:
        assert await receive(systemd) == "READY=1"
        # by then the heartbeat and who is on call are in the store (beamwatch facility)
        assert app.store.last_beat() is not None
        [mx] = app.store.oncall_now()
        assert (mx["team"], mx["person"], mx["name"]) == ("mx", "ana", "Ana Lima")
        assert await receive(systemd) == "WATCHDOG=1"  # the first tick
        assert await receive(systemd) == "WATCHDOG=1"  # and the next
    finally:
        app.stop()
        await running
    seen = []
    while True:
        try:
            seen.append(systemd.recv(4096).decode())
        except BlockingIOError:
            break
    assert seen[-1] == "STOPPING=1"


async def test_a_tick_that_fails_sends_no_watchdog(tmp_path, systemd):
    app = App(write_config(tmp_path), sources={"ca": SoftSource("ca")})
    try:
        def broken() -> None:
            raise RuntimeError("the engine is broken")

        healthy = app.engine.tick
        app.engine.tick = broken
        with pytest.raises(RuntimeError):
            await app._tick()
        with pytest.raises(BlockingIOError):
            systemd.recv(4096)  # nothing was sent: systemd restarts us in WatchdogSec
        app.engine.tick = healthy
        await app._tick()
        assert systemd.recv(4096) == b"WATCHDOG=1"
    finally:
        await app.close()


def test_outside_systemd_nothing_is_sent(monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    notifier = Notifier()
    assert not notifier.enabled
    notifier.ready()  # no socket, no error


def test_an_abstract_socket_address_is_understood(monkeypatch):
    name = f"beamwatch-test-{id(monkeypatch)}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    try:
        notifier = Notifier("@" + name)
        notifier.watchdog()
        assert sock.recv(4096) == b"WATCHDOG=1"
        notifier.close()
    finally:
        sock.close()
