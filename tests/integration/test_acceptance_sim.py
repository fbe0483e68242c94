"""Acceptance: the simulated MX beamline (real IOCs) watched by `beamwatch run` with the
demo config — one fault pages one person once, naming the root cause."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from support.ioc import require_epicscorelibs
from werkzeug import Response

from beamwatch.sim.beamline import SimBeamline
from beamwatch.store import Store
from tests.support.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent / "beamwatch"


@pytest.fixture
def sim(tmp_path_factory):
    """A fresh simulated beamline per test: what one fault leaves behind (a beam coming
    back, a vacuum recovering) must not become the next test's incident."""
    require_epicscorelibs()
    beamline = SimBeamline(base_port=0, workdir=tmp_path_factory.mktemp("sim")).start()
    yield beamline
    beamline.stop()


class Receivers:
    """The demo's webhooks (on-call person, ops channel), recording what arrives."""

    def __init__(self, httpserver):
        self.got: list[tuple[float, str, dict]] = []
        for path in ("/person/ana", "/person/ben", "/channel/ops"):
            httpserver.expect_request(path, method="POST").respond_with_handler(self.record)
        self.base = httpserver.url_for("").rstrip("/")

    def record(self, request):
        self.got.append((time.monotonic(), request.path, json.loads(request.data)))
        return Response("ok")

    def alarms(self, path: str = "/channel/ops", after: float = 0.0) -> list[dict]:
        return [b for t, p, b in self.got if p == path and b["kind"] == "alarm" and t >= after]


class Watch:
    """`beamwatch run` on the demo config, pointed at the sim and the receivers."""

    def __init__(self, sim, receivers: Receivers, tmp_path: Path):
        text = (ROOT / "examples" / "i04-demo.yaml").read_text()
        text = text.replace("http://127.0.0.1:8765", receivers.base)
        text = text.replace("addr_list: [127.0.0.1:5077]",  # PVA, before the CA ones
                            f"addr_list: [{sim.layout.pva_address}]")
        text = re.sub(r"addr_list: \[127\.0\.0\.1:5070.*\]",
                      f"addr_list: [{', '.join(sim.addresses)}]", text)
        text = text.replace("http://127.0.0.1:5076", sim.layout.status_url)  # GDA's status
        text = text.replace("sqlite:///beamwatch-demo.db", f"sqlite:///{tmp_path / 'bw.db'}")
        text = text.replace("beamwatch-demo-ispyb.db", str(sim.ispyb_path))
        text = text.replace("/tmp/beamwatch-demo-files", str(sim.data_dir))  # images, log
        text = pin_rota(text)
        text = text.replace('web: {listen: "127.0.0.1:8080"}', 'web: {listen: "127.0.0.1:0"}')
        self.cfg = tmp_path / "i04.yaml"
        self.cfg.write_text(text)
        self.store = Store(f"sqlite:///{tmp_path / 'bw.db'}")
        self.proc = subprocess.Popen([str(BIN), "run", "-c", str(self.cfg)],
                                     env={**os.environ, **sim.env}, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        wait_for(lambda: len(self.store.latest()) >= 95, 60, "the demo checks connected")
        # a quiet beamline to start from (the previous test's fault may still be settling:
        # beam coming back after a ring dump takes a while)
        wait_for(self.quiet, 180, "every check OK")
        time.sleep(1)
        self.receivers_at_start = 0

    def quiet(self) -> bool:
        latest = self.store.latest()
        states = self.store.load_states()
        return (len(latest) >= 95 and all(v.severity == 0 for v in latest.values())
                and all(s.severity == 0 for s in states.values()))

    def cli(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(BIN), *args, "-c", str(self.cfg)], capture_output=True,
                              text=True, timeout=60)

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=30)


def pin_rota(text: str) -> str:
    """The demo's rota hands over every Monday 09:00 between ana and ben, so who is paged
    depends on the week the test runs in. Start it an hour ago (in UTC: no DST ambiguity),
    so ana's shift runs for the next seven days whenever this runs."""
    start = datetime.fromtimestamp(time.time() - 3600, UTC)
    demo = "start: 2026-01-05T09:00"
    assert demo in text, "the demo's rota changed: update pin_rota"
    return text.replace(demo, f'start: "{start:%Y-%m-%dT%H:%M:%S+00:00}"')




@pytest.fixture
def watch(sim, httpserver, tmp_path):
    receivers = Receivers(httpserver)
    w = Watch(sim, receivers, tmp_path)
    receivers.got.clear()  # whatever settling at start-up said is not part of the test
    w.receivers = receivers
    yield w
    w.stop()
    sim.clear()


def test_front_end_vacuum_loss_pages_once_with_its_consequences(sim, watch):
    sim.fault("vacuum-loss")
    wait_for(lambda: watch.receivers.alarms(), 60, "a page")
    time.sleep(15)  # more than the settle time: every consequence has been decided
    [page] = watch.receivers.alarms("/channel/ops")
    assert page["title"] == "Front-end vacuum (interlock gauge)"
    assert len(page["consequences"]) >= 40
    [team] = json.loads(watch.cli("oncall", "--json", "--team", "mx-support").stdout)["teams"]
    assert team["person"] == "ana"  # the pinned rota, as beamwatch itself reports it
    assert len(watch.receivers.alarms("/person/ana")) == 1  # the on-call person, once
    assert watch.receivers.alarms("/person/ben") == []  # and nobody else
    failing = [c for c in json.loads(watch.cli("status", "--json").stdout)["checks"]
               if c["severity"] != "OK"]
    assert len(failing) >= 40
    muted = [c for c in failing if c["muted"] == "DEPENDENCY"]
    assert len(muted) >= 40 and all("fe-vacuum" in c["mute_detail"] or "Front-end" in
                                    c["mute_detail"] for c in muted)


def test_a_dead_ioc_is_one_incident_not_one_per_pv(sim, watch):
    t0 = time.monotonic()
    sim.fault("ioc-down", ioc="endstation")
    wait_for(lambda: watch.receivers.alarms(after=t0), 60, "a page")
    time.sleep(15)
    pages = watch.receivers.alarms("/channel/ops", after=t0)
    assert len(pages) == 1, [p["title"] for p in pages]
    assert len(pages[0]["consequences"]) >= 20


def test_a_5s_spike_under_its_for_delay_pages_nobody(sim, watch):
    sim.fault("spike")
    time.sleep(25)
    assert watch.receivers.got == []


def test_silence_expiring_while_the_fault_persists_notifies_then_once(sim, watch):
    done = watch.cli("silence", "group=cryo", "--for", "45s", "--reason", "refilling",
                     "--as", "ana")
    assert done.returncode == 0, done.stderr
    time.sleep(5)  # the engine mirrors silences from the store on its next tick
    sim.fault("cryojet-warming")
    time.sleep(25)
    assert watch.receivers.alarms() == []  # silenced
    wait_for(lambda: watch.receivers.alarms(), 60, "the page once the silence ends")
    time.sleep(10)
    pages = watch.receivers.alarms("/channel/ops")
    assert len(pages) == 1 and pages[0]["labels"] is not None


def test_ring_dump_pages_once_and_nobody_in_shutdown(sim, watch):
    sim.fault("ring-dump")
    wait_for(lambda: watch.receivers.alarms(), 60, "a page")
    time.sleep(12)
    [page] = watch.receivers.alarms("/channel/ops")
    assert page["check_ids"] == ["ring-current"]
    sim.clear()
    wait_for(lambda: watch.store.state("ring-current").current == 0, 90, "beam back")

    done = watch.cli("mode", "set", "shutdown", "--for", "1h", "--reason", "shutdown week",
                     "--as", "ana")
    assert done.returncode == 0, done.stderr
    time.sleep(5)  # the engine picks the override up on its next tick
    before = len(watch.receivers.alarms())
    sim.fault("ring-dump")
    wait_for(lambda: (watch.store.state("ring-current") or None)
             and watch.store.state("ring-current").severity > 0, 60, "ring-current alarm")
    time.sleep(12)
    assert len(watch.receivers.alarms()) == before  # logged, nobody paged
    [last] = watch.store.transitions(check_id="ring-current")[-1:]
    assert last.transition.muted is not None and last.transition.muted.value == "MODE"
