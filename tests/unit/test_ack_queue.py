"""`beamwatch ack` only ever queues: the engine applies the ack, stores it and announces
it. With no engine running the CLI says so and the ack waits for `beamwatch run`, for at
most a day. A real App (in-memory source, SQLite, outbox worker) on a fake clock, the ops
channel a real HTTP server on loopback."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner
from werkzeug import Response

from beamwatch.api import service
from beamwatch.app import App
from beamwatch.cli import app as cli_app
from beamwatch.clock import FakeClock
from beamwatch.config import load_config
from beamwatch.sources.soft import SoftSource
from beamwatch.store import Store

PV = "BL04I-MO-DCM-01:TEMP1"
HOUR = 3600.0
CONFIG = """
beamline: I04
timezone: Europe/London
storage: {url: "sqlite:///{db}"}
checks:
  - id: dcm-temp
    pv: BL04I-MO-DCM-01:TEMP1
    above: {minor: 120, major: 140}
  - id: dcm-flow
    pv: BL04I-MO-DCM-01:FLOW
    below: {major: 1}
channels:
  ops: {kind: webhook, webhook_url: "{hook}ops"}
routes:
  - to: [channel:ops]
"""


class Beamline:
    """The config on disk, the ops channel's inbox, and `beamwatch run` started by hand
    (App.start, then App.step per tick) on a fake clock."""

    def __init__(self, tmp_path, httpserver):
        self.path = tmp_path / "bw.yaml"
        self.path.write_text(CONFIG.replace("{db}", str(tmp_path / "bw.db"))
                             .replace("{hook}", httpserver.url_for("/")))
        self.clock = FakeClock()
        self.got: list[dict] = []
        httpserver.expect_request("/ops", method="POST").respond_with_handler(self._record)
        self.app: App | None = None

    def _record(self, request):
        body = json.loads(request.data)
        if "dcm-temp" in body["check_ids"]:  # not beamwatch's own checks (beamwatch.*)
            self.got.append(body)
        return Response("ok")

    async def start(self) -> App:
        self.source = SoftSource("ca", self.clock)
        self.app = App(self.path, self.clock, {"ca": self.source})
        await self.app.start()
        return self.app

    async def stop(self) -> None:
        if self.app is not None:
            await self.app.close()
            self.app = None

    async def alarm_then_stop(self) -> None:
        """dcm-temp MAJOR, paged, and the engine gone: what `beamwatch ack` then meets."""
        app = await self.start()
        self.source.push(PV, 150.0)
        await app.step()
        assert [m["kind"] for m in self.got] == ["alarm"]
        await self.stop()

    def kinds(self) -> list[str]:
        return [m["kind"] for m in self.got]


@pytest.fixture
async def beamline(tmp_path, httpserver):
    b = Beamline(tmp_path, httpserver)
    yield b
    await b.stop()


@pytest.fixture
def store(beamline):
    s = Store(f"sqlite:///{beamline.path.parent / 'bw.db'}")
    yield s
    s.close()


def ack_transitions(store: Store) -> list:
    return [r.transition for r in store.transitions(check_id="dcm-temp")
            if r.transition.reason == "ack"]


async def test_cli_ack_without_an_engine_queues_it_and_says_so(beamline, store):
    await beamline.alarm_then_stop()
    r = CliRunner().invoke(cli_app, ["ack", "-c", str(beamline.path), "dcm-temp", "--as", "ben",
                                     "--json"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout) == {
        "ok": True, "queued": True, "engine_running": False,
        "message": "no engine is running; the ack is queued and will be applied when "
                   "`beamwatch run` starts"}
    [cmd] = store.queued_commands()
    assert (cmd.verb, cmd.args, cmd.actor) == ("ack", {"check_id": "dcm-temp"}, "ben")
    assert store.state("dcm-temp").acked is False  # nothing written behind an engine's back
    assert ack_transitions(store) == []
    again = CliRunner().invoke(cli_app, ["ack", "-c", str(beamline.path), "dcm-temp"],
                               catch_exceptions=False)
    assert (again.exit_code, again.stdout) == (0, (  # one line: a script may grep it
        "no engine is running; the ack is queued and will be applied when `beamwatch run` "
        "starts (an ack of dcm-temp was already queued)\n"))


async def test_a_queued_ack_is_applied_and_announced_when_run_starts(beamline, store):
    await beamline.alarm_then_stop()
    result = service.acknowledge(load_config(beamline.path), store, "dcm-temp", "ben",
                                 now=beamline.clock.now())
    assert (result.ok, result.queued, result.engine_running) == (True, True, False)

    beamline.clock.advance(23 * HOUR)  # a day later, not quite
    app = await beamline.start()  # applies what was queued before subscribing to anything
    assert store.state("dcm-temp").acked_by == "ben"
    cmd = store.command(1)
    assert (cmd.status, cmd.result) == ("done", "acknowledged dcm-temp")
    await app.step()
    assert beamline.kinds() == ["alarm", "ack"]
    assert beamline.got[-1]["actor"] == "ben"
    [tr] = ack_transitions(store)
    assert tr.actor == "ben"


async def test_an_ack_queued_more_than_a_day_before_run_starts_is_dropped(beamline, store):
    await beamline.alarm_then_stop()
    service.acknowledge(load_config(beamline.path), store, "dcm-temp", "ben",
                        now=beamline.clock.now())
    beamline.clock.advance(25 * HOUR)
    app = await beamline.start()
    await app.step()
    cmd = store.command(1)
    assert cmd.status == "expired"
    assert cmd.result == ("dropped: ack queued by ben 1d1h ago, more than 24h before the "
                          "engine could apply it")
    assert store.state("dcm-temp").acked is False
    assert ack_transitions(store) == [] and beamline.kinds() == ["alarm"]


async def test_a_slow_engine_is_not_overtaken_by_a_direct_write(beamline, store):
    """The engine runs but its heartbeat is 20 s old (a long store stall): the CLI
    thinks no engine runs. The ack must still be the engine's to apply and announce."""
    app = await beamline.start()
    beamline.source.push(PV, 150.0)
    await app.step()
    now = beamline.clock.now()
    store.beat("engine", 1, "host", now - 60, now - 20, str(beamline.path))
    result = service.acknowledge(load_config(beamline.path), store, "dcm-temp", "ben",
                                 wait=0, now=now)
    assert result.queued and not result.engine_running
    assert store.state("dcm-temp").acked is False and ack_transitions(store) == []

    beamline.source.push(PV, 151.0)  # the engine goes on writing this check's state
    await app.step()
    state = store.state("dcm-temp")
    assert (state.acked, state.acked_by) == (True, "ben")
    assert beamline.kinds() == ["alarm", "ack"] and beamline.got[-1]["actor"] == "ben"


async def test_without_an_engine_the_stored_state_answers_what_it_can(beamline, store):
    config = load_config(beamline.path)
    await beamline.alarm_then_stop()
    now = beamline.clock.now()
    assert service.acknowledge(config, store, "dcm-flow", "ben", now=now).message == (
        "dcm-flow has nothing to acknowledge")
    assert not service.acknowledge(config, store, "nope", "ben", now=now).ok
    first = service.acknowledge(config, store, "dcm-temp", "ben", now=now)
    again = service.acknowledge(config, store, "dcm-temp", "ana", now=now + 60)
    assert first.queued and again.queued
    assert again.message.endswith("(an ack of dcm-temp was already queued)")
    assert [c.actor for c in store.queued_commands()] == ["ben"]  # queued once

    app = await beamline.start()
    await app.step()
    assert service.acknowledge(config, store, "dcm-temp", "ana", now=now).message == (
        "dcm-temp is already acknowledged by ben")
