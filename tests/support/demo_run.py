"""`beamwatch run` on the demo config as a process, pointed at a simulated beamline
(tests/integration/conftest.py `sim`) and at webhook receivers on loopback: what the
acceptance tests and the Slack story drive."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from werkzeug import Response

from beamwatch.store import Store
from tests.support.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent / "beamwatch"


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

    def __init__(self, sim, receivers: Receivers, tmp_path: Path,
                 edit: Callable[[str], str] = lambda text: text):
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
        text = edit(text)
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
