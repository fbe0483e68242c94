"""`beamwatch run` as a real process against a real softIoc: a crash between decision
and delivery loses nothing and sends nothing twice; latched and acknowledged states
survive a restart; an IOC that dies is reported after the grace period and recovers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from werkzeug import Response

from beamwatch.store import Store
from beamwatch.store.outbox import Outbox
from tests.support.waiting import wait_for

BIN = Path(sys.executable).parent / "beamwatch"

DB = """
record(ai, "$(P)T1") { field(VAL, "1") }
record(ai, "$(P)T2") { field(VAL, "1") }
record(ai, "$(P)T3") { field(VAL, "1") }
record(mbbi, "$(P)SHTR") { field(ZRST, "Open") field(ONST, "Closed") field(VAL, "0") }
"""


def write_config(tmp_path: Path, ioc, hook: str, extra: str = "") -> Path:
    cfg = tmp_path / "bw.yaml"
    checks = "".join(f"""
  - id: temp-{i}
    pv: {ioc.pv(f"T{i}")}
    above: {{major: 10}}
    disconnect_grace: 2s
""" for i in (1, 2, 3))
    cfg.write_text(f"""
beamline: TEST
storage: {{url: "sqlite:///{tmp_path / 'bw.db'}"}}
web: {{listen: "off"}}  # no HTTP API needed here (tests may run side by side)
sources: {{ca: {{kind: ca, addr_list: ["{ioc.addr}"]}}}}
checks:{checks}
  - id: shutter
    pv: {ioc.pv("SHTR")}
    when: "value != 'Open'"
    latch: true
channels:
  hook: {{kind: webhook, webhook_url: "{hook}"}}
routes:
  - to: [channel:hook]
{extra}""")
    return cfg


def start(cfg: Path, ioc) -> subprocess.Popen:
    env = {**os.environ, **ioc.client_env}
    return subprocess.Popen([str(BIN), "run", "-c", str(cfg)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)




BEAMLINE = {"temp-1", "temp-2", "temp-3", "shutter"}


def beamline_messages(hook) -> list[dict]:
    """What the hook got about the test's checks (not beamwatch's own, beamwatch.*)."""
    return [m for m in hook.got if set(m["check_ids"]) & BEAMLINE]


def delivered(hook) -> list[str]:
    return sorted(cid for m in hook.got for cid in m["check_ids"])


def cli(cfg: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN), *args, "-c", str(cfg)], capture_output=True, text=True,
                          timeout=60)


@pytest.fixture
def hook(httpserver):
    """A webhook receiver that refuses (503) until `.up = True`, recording what it got."""
    class Hook:
        up = False
        got: list[dict] = []
        url = httpserver.url_for("/hook")

        def handle(self, request):
            if not self.up:
                return Response("maintenance", status=503)
            self.got.append(json.loads(request.data))
            return Response("ok")

    h = Hook()
    h.got = []
    httpserver.expect_request("/hook", method="POST").respond_with_handler(h.handle)
    return h


def test_kill_9_between_decision_and_delivery_delivers_each_exactly_once(
        tmp_path, ioc_factory, hook):
    ioc = ioc_factory(DB)
    cfg = write_config(tmp_path, ioc, hook.url)
    store = Store(f"sqlite:///{tmp_path / 'bw.db'}")
    box = Outbox(store)
    proc = start(cfg, ioc)
    try:
        wait_for(lambda: BEAMLINE <= set(store.latest()), what="all PVs connected")
        for i in (1, 2, 3):
            ioc.command(f"dbpf {ioc.pv(f'T{i}')} 20")
        # decided and stored, each tried once against a server that refuses
        wait_for(lambda: len([r for r in box.rows(kind="alarm") if r["attempts"] >= 1]) == 3,
                 what="three alarms decided and attempted")
        proc.kill()  # kill -9: no clean shutdown
        proc.wait(timeout=10)
        assert hook.got == []
        hook.up = True
        proc = start(cfg, ioc)
        wait_for(lambda: len(delivered(hook)) >= 3, timeout=60, what="delivery after restart")
        time.sleep(3)  # anything sent twice would have arrived by now
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0, out
    # alarms due together for one receiver travel as one message: count the alarms
    assert delivered(hook) == ["temp-1", "temp-2", "temp-3"], hook.got
    assert len({m["id"] for m in hook.got}) == len(hook.got)
    assert len(box.rows(kind="alarm")) == 3  # the restart decided nothing twice
    assert {r["status"] for r in box.rows(kind="alarm")} == {"sent"}


def test_latched_and_acked_state_survive_a_restart(tmp_path, ioc_factory, hook):
    """The ack given while no engine runs waits in the queue (nothing else writes alarm
    state) and is applied, on the restored latched alarm, when `beamwatch run` starts."""
    hook.up = True
    ioc = ioc_factory(DB)
    cfg = write_config(tmp_path, ioc, hook.url)
    store = Store(f"sqlite:///{tmp_path / 'bw.db'}")
    proc = start(cfg, ioc)
    try:
        wait_for(lambda: BEAMLINE <= set(store.latest()), what="all PVs connected")
        ioc.command(f"dbpf {ioc.pv('SHTR')} 1")
        wait_for(lambda: store.state("shutter") and store.state("shutter").severity > 0,
                 what="shutter alarm")
        ioc.command(f"dbpf {ioc.pv('SHTR')} 0")
        wait_for(lambda: store.state("shutter").current == 0, what="shutter back to Open")
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=20)
        assert proc.returncode == 0

        status = json.loads(cli(cfg, "status", "--json").stdout)
        [shutter] = [c for c in status["checks"] if c["id"] == "shutter"]
        assert (shutter["severity"], shutter["current"]) == ("MAJOR", "OK")  # still latched
        wait_for(lambda: not json.loads(cli(cfg, "status", "--json").stdout)["engine_running"],
                 timeout=30, what="the stopped engine's heartbeat to go stale")
        done = cli(cfg, "ack", "shutter", "--as", "ana")
        assert done.returncode == 0, done
        assert done.stdout.startswith("no engine is running; the ack is queued and will be "
                                      "applied when `beamwatch run` starts"), done
        assert store.state("shutter").severity > 0  # queued, not written behind anyone

        proc = start(cfg, ioc)
        wait_for(lambda: any(m["kind"] == "ack" for m in beamline_messages(hook)),
                 what="ack applied at start")
        assert store.state("shutter").severity == 0  # latched alarm cleared by the ack

        # with the engine running the ack is applied at once and its answer printed
        ioc.command(f"dbpf {ioc.pv('T1')} 20")
        wait_for(lambda: store.state("temp-1") and store.state("temp-1").severity > 0,
                 what="temp-1 alarm")
        wait_for(lambda: json.loads(cli(cfg, "status", "--json").stdout)["engine_running"],
                 what="engine heartbeat")
        done = cli(cfg, "ack", "temp-1", "--as", "ben")
        assert done.returncode == 0 and done.stdout.strip() == "acknowledged temp-1", done
        assert store.state("temp-1").acked_by == "ben"
        wait_for(lambda: [m["kind"] for m in beamline_messages(hook)].count("ack") == 2,
                 what="second ack announced")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=20)
    acks = [m for m in beamline_messages(hook) if m["kind"] == "ack"]
    assert [(m["check_ids"], m["actor"]) for m in acks] == [(["shutter"], "ana"),
                                                          (["temp-1"], "ben")]
    kinds = [m["kind"] for m in beamline_messages(hook)]
    assert kinds.count("alarm") == 2  # shutter, then temp-1: each once


def test_dead_ioc_is_disconnected_after_grace_and_recovers(tmp_path, ioc_factory, hook):
    hook.up = True
    ioc = ioc_factory(DB)
    cfg = write_config(tmp_path, ioc, hook.url)
    store = Store(f"sqlite:///{tmp_path / 'bw.db'}")
    proc = start(cfg, ioc)
    try:
        wait_for(lambda: BEAMLINE <= set(store.latest()), what="all PVs connected")
        ioc.kill()
        killed = time.monotonic()
        wait_for(lambda: store.state("temp-1") and store.state("temp-1").severity == 3,
                 what="temp-1 INVALID")
        assert time.monotonic() - killed >= 2.0  # not before the grace period
        assert store.state("temp-1").message.startswith("disconnected")
        assert ioc.addr.split(":")[1] in store.state("temp-1").message  # names the IOC
        ioc.start()
        wait_for(lambda: store.state("temp-1").severity == 0, timeout=30, what="recovery")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=20)
    rows = [r.transition for r in store.transitions(check_id="temp-1")]
    assert [t.new for t in rows if t.reason == "evaluation"] == [3, 0]
    # The alarm is held 10 s for its IOC's other PVs. If the IOC took longer than that to
    # come back (a loaded box), the held alarm's fate is logged, while it is still INVALID.
    # A fate never comes after the recovery: that was a page for a fault already over.
    fates = [t for t in rows if t.reason != "evaluation"]
    assert all(t.reason in ("paged", "muted") and t.new == 3 for t in fates)
    assert rows[-1].new == 0
