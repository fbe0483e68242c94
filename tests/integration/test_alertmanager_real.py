"""beamwatch beside Debian's real Prometheus Alertmanager (0.25), on loopback.

Out: a beamwatch alarm routed to a `kind: alertmanager` channel is an alert in
Alertmanager's v2 API with the check's labels; the resolve ends it.
In: an alert POSTed to Alertmanager (as Prometheus would) reaches beamwatch through
Alertmanager's own webhook (bearer token of web.tokens), puts its check in alarm and
pages per beamwatch's routes; a check that `depends_on` it is muted; a restart still
knows it; Alertmanager's resolved notification clears it.

In CI a missing prometheus-alertmanager fails these tests; elsewhere they skip,
saying how to install it."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from beamwatch.app import App
from beamwatch.config import load_config
from beamwatch.model import MuteReason, Severity
from beamwatch.sources.alertmanager import AlertmanagerSource
from beamwatch.sources.soft import SoftSource
from beamwatch.web.server import for_app

pytestmark = pytest.mark.integration

TOKEN = "am-to-bw-7c1d"
PV = "BL04I-EA-DET-01:TEMP"


def alertmanager_binary() -> str:
    found = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
    if found:
        return found
    if os.environ.get("CI") == "true":
        pytest.fail("prometheus-alertmanager is needed in CI: .ci/run installs it "
                    "(apt-get install prometheus-alertmanager)")
    pytest.skip("prometheus-alertmanager not installed; apt-get install "
                "prometheus-alertmanager to run this test")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RealAlertmanager:
    """One Alertmanager: beamwatch's own alerts (beamline=I04) go nowhere, every other
    alert to beamwatch's webhook at `bw_port`, at once (group_wait 0s, interval 1s)."""

    def __init__(self, tmp: Path):
        self.port, self.bw_port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = tmp / "alertmanager.yml"
        config.write_text(f"""
route:
  receiver: beamwatch
  group_by: [alertname, instance]
  group_wait: 0s
  group_interval: 1s
  repeat_interval: 1h
  routes:
    - {{receiver: nowhere, matchers: ['beamline="I04"']}}
receivers:
  - name: nowhere
  - name: beamwatch
    webhook_configs:
      - url: http://127.0.0.1:{self.bw_port}/api/alertmanager
        send_resolved: true
        http_config: {{authorization: {{credentials: {TOKEN}}}}}
""")
        self.process = subprocess.Popen(
            [alertmanager_binary(), f"--config.file={config}", f"--storage.path={tmp / 'am'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--cluster.listen-address="],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(f"{self.url}/-/ready", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or self.process.poll() is not None:
                self.close()
                raise AssertionError("Alertmanager did not start")
            time.sleep(0.1)

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=20)


@pytest.fixture(scope="module")
def alertmanager(tmp_path_factory) -> Iterator[RealAlertmanager]:
    am = RealAlertmanager(tmp_path_factory.mktemp("alertmanager"))
    yield am
    am.close()


CONFIG = """
beamline: I04
storage: {{url: "sqlite:///{db}"}}
web: {{listen: "127.0.0.1:{port}", url: "https://bw.example", tokens: {{alertmanager: "{token}"}}}}
monitor: {{checks: false}}
noise: {{settle: 0s, recovery_grace: 0s}}
checks:
  - {{id: det-temp, name: Detector temperature, group: detector, pv: "{pv}",
      above: {{major: 30}}, labels: {{area: endstation}}, depends_on: [ws1-down]}}
  - {{id: ws1-down, name: Workstation 1 down, alert: {{alertname: NodeDown, instance: "ws1:9100"}}}}
channels:
  am: {{kind: alertmanager, url: "{am}", labels: {{team: mx}}}}
  pager: {{kind: webhook, webhook_url: "{pager}"}}
routes:
  - {{match: {{labels: {{alertname: NodeDown, job: node}}}}, to: ["channel:pager"]}}
  - {{match: {{check: det-temp}}, to: ["channel:am"]}}
"""


class Beamwatch:
    def __init__(self, tmp: Path, am: RealAlertmanager, pager: str):
        path = tmp / "bw.yaml"
        path.write_text(CONFIG.format(db=tmp / "bw.db", port=am.bw_port, token=TOKEN, pv=PV,
                                      am=am.url, pager=pager))
        self.source = SoftSource("ca")
        alerts = AlertmanagerSource.from_config("alertmanager", load_config(path))
        self.app = App(path, sources={"ca": self.source, "alertmanager": alerts})
        self.web = for_app(self.app)

    async def __aenter__(self) -> Beamwatch:
        self.task = asyncio.create_task(self.app.run(services=[self.web.serve]))
        await until(lambda: self.app.engine.sample_of("ws1-down") is not None)
        return self

    async def __aexit__(self, *exc) -> None:
        self.app.stop()
        await asyncio.wait_for(self.task, 30)

    def severity(self, check_id: str) -> Severity:
        state = self.app.engine.state_of(check_id)
        return state.severity if state is not None else Severity.OK


async def until(predicate, timeout: float = 15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        await asyncio.sleep(0.05)
    raise AssertionError("timed out")


async def until_async(fetch, timeout: float = 15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := await fetch():
            return value
        await asyncio.sleep(0.1)
    raise AssertionError("timed out")


async def test_a_beamwatch_alarm_is_an_alert_in_alertmanager_until_resolved(
        alertmanager, tmp_path, httpserver):
    async with Beamwatch(tmp_path, alertmanager, httpserver.url_for("/page")) as bw, \
            httpx.AsyncClient(base_url=alertmanager.url) as am:

        async def ours() -> list[dict]:
            alerts = (await am.get("/api/v2/alerts")).json()
            return [a for a in alerts if a["labels"].get("alertname") == "det-temp"]

        bw.source.push(PV, 35.0)
        [alert] = await until_async(ours)
        assert alert["labels"] == {"alertname": "det-temp", "check": "det-temp",
                                   "beamline": "I04", "group": "detector",
                                   "area": "endstation", "severity": "critical", "team": "mx"}
        assert alert["annotations"]["summary"].startswith("Detector temperature: 35")
        assert alert["generatorURL"].startswith("https://bw.example/")
        assert alert["status"]["state"] == "active"

        bw.source.push(PV, 20.0)
        await until_async(lambda: _none(ours))  # ended: no longer an active alert


async def _none(fetch) -> bool:
    return not await fetch()


async def test_an_alert_through_alertmanager_pages_mutes_dependents_survives_restart(
        alertmanager, tmp_path, httpserver):
    httpserver.expect_request("/page").respond_with_data("ok")
    starts = datetime.now(UTC) - timedelta(seconds=5)
    node_down = {"labels": {"alertname": "NodeDown", "instance": "ws1:9100",
                            "severity": "critical", "job": "node"},
                 "annotations": {"summary": "ws1 is not answering"},
                 "startsAt": starts.isoformat()}
    async with httpx.AsyncClient(base_url=alertmanager.url) as am:
        async with Beamwatch(tmp_path, alertmanager, httpserver.url_for("/page")) as bw:
            assert (await am.post("/api/v2/alerts", json=[node_down])).status_code == 200
            await until(lambda: bw.severity("ws1-down") == Severity.MAJOR)
            state = bw.app.engine.state_of("ws1-down")
            assert state.message == ("NodeDown (instance=ws1:9100, job=node) firing: "
                                     "ws1 is not answering")
            pages = await until(lambda: [r for r, _ in httpserver.log if r.path == "/page"])
            # routed by a label of the alert (job) that its check does not select on
            assert pages[0].json["check_ids"] == ["ws1-down"]
            assert pages[0].json["labels"]["job"] == "node"

            bw.source.push(PV, 35.0)  # a consequence of the workstation being down
            await until(lambda: bw.severity("det-temp") == Severity.MAJOR)
            await until(lambda: [
                t for t in bw.app.store.transitions(check_id="det-temp")
                if t.transition.muted == MuteReason.DEPENDENCY])
            alerts = (await am.get("/api/v2/alerts")).json()
            assert not [a for a in alerts if a["labels"]["alertname"] == "det-temp"]

        # restarted: Alertmanager sends the alert again only in an hour; beamwatch knows it
        async with Beamwatch(tmp_path, alertmanager, httpserver.url_for("/page")) as bw:
            assert bw.app.engine.sample_of("ws1-down").value == 1
            assert bw.severity("ws1-down") == Severity.MAJOR
            ended = {**node_down, "endsAt": datetime.now(UTC).isoformat()}
            assert (await am.post("/api/v2/alerts", json=[ended])).status_code == 200
            await until(lambda: bw.severity("ws1-down") == Severity.OK)
            assert bw.app.engine.sample_of("ws1-down").value == 0
