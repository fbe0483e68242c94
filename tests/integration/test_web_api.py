"""The HTTP API served for real by App.run (uvicorn on loopback, SQLite store, an
in-memory source): reads, changes with and without an identity, bad input, live
updates by server-sent events, /metrics, and a real Prometheus (Debian's) scraping it —
in CI a missing prometheus fails that test; on a workstation it skips, saying how to
install it."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from beamwatch.api import audit
from beamwatch.app import App
from beamwatch.sources.soft import SoftSource
from beamwatch.store.noise import NoiseStore
from beamwatch.web.server import for_app

pytestmark = pytest.mark.integration

TOKEN = "tok-ana-4f9c2e"
PV = "BL04I-MO-DCM-01:TEMP1"
CONFIG = """
beamline: I04
timezone: Europe/London
storage: {{url: "sqlite:///{db}"}}
web:
  listen: "127.0.0.1:0"
  tokens: {{ana: "{token}"}}
  trusted_proxy_header: X-Forwarded-User
  trusted_proxies: [{proxies}]
monitor: {{checks: false}}
modes: {{names: [user, maintenance, shutdown], default: user}}
checks:
  - {{id: dcm-temp, name: DCM crystal temperature, group: optics, pv: "{pv}",
      above: {{minor: 120, major: 140}}, runbook: "Check the LN2 flow on the DCM"}}
  - {{id: fe-vacuum, group: vacuum, pv: "FE:VAC", above: {{major: 1e-7}}}}
people:
  ana: {{webhook: "http://127.0.0.1:9/ana"}}
"""


class Running:
    def __init__(self, tmp_path: Path, proxies: str = "127.0.0.1"):
        path = tmp_path / "bw.yaml"
        path.write_text(CONFIG.format(db=tmp_path / "bw.db", token=TOKEN, pv=PV,
                                      proxies=proxies))
        self.source = SoftSource("ca")
        self.app = App(path, sources={"ca": self.source})
        self.web = for_app(self.app)
        self.url = self.web.url

    async def __aenter__(self) -> Running:
        self.task = asyncio.create_task(self.app.run(services=[self.web.serve]))
        await asyncio.wait_for(self.app.ready.wait(), 30)  # leading, subscribed
        self.http = httpx.AsyncClient(base_url=self.url, timeout=15)
        for _ in range(100):
            try:
                await self.http.get("/healthz")
                break
            except httpx.TransportError:
                await asyncio.sleep(0.05)
        return self

    async def __aexit__(self, *exc) -> None:
        await self.http.aclose()
        self.app.stop()
        await asyncio.wait_for(self.task, 30)

    async def alarm(self, value: float = 150.0) -> None:
        self.source.push(PV, value)
        await until(lambda: (st := self.app.store.state("dcm-temp")) and st.severity == 2)


async def until(predicate, timeout: float = 15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        await asyncio.sleep(0.05)
    raise AssertionError("timed out")


BEARER = {"Authorization": f"Bearer {TOKEN}"}


async def test_status_check_and_values_read_without_an_identity(tmp_path):
    async with Running(tmp_path) as run:
        await run.alarm()
        status = (await run.http.get("/api/status")).json()
        assert status["beamline"] == "I04" and status["engine_running"] is True
        assert status["mode"]["mode"] == "user"
        first = status["checks"][0]
        assert (first["id"], first["severity"]) == ("dcm-temp", "MAJOR")
        only = (await run.http.get("/api/status", params={"group": "vacuum"})).json()
        assert [c["id"] for c in only["checks"]] == ["fe-vacuum"]
        missing = await run.http.get("/api/status", params={"group": "nope"})
        assert (missing.status_code, missing.json()) == (404, {"error": "no group 'nope'"})

        check = (await run.http.get("/api/checks/dcm-temp")).json()
        assert check["history"][-1]["new"] == "MAJOR"
        assert check["runbook"] == "Check the LN2 flow on the DCM"  # what to do, for the UI
        values = (await run.http.get("/api/checks/dcm-temp/values",
                                     params={"since": "1h"})).json()
        assert values["minutes"][-1]["vmax"] == 150.0  # the minute not stored yet too
        typo = await run.http.get("/api/checks/dcm-tmp")
        assert typo.status_code == 404 and "did you mean dcm-temp" in typo.json()["error"]
        bad = await run.http.get("/api/history", params={"since": "last tuesday-ish"})
        assert bad.status_code == 400 and "since:" in bad.json()["error"]


@pytest.mark.parametrize("headers, status", [
    ({}, 401),
    ({"Authorization": "Bearer wrong"}, 401),
    ({"X-Forwarded-User": "mallory"}, 403),  # the proxy's header, but no X-Requested-With
])
async def test_a_change_without_an_identity_is_refused_and_nothing_is_done(tmp_path, headers,
                                                                           status):
    async with Running(tmp_path) as run:
        r = await run.http.post("/api/silences", headers=headers, json={
            "matchers": ["dcm-temp"], "duration": "2h", "reason": "sneaky"})
        assert r.status_code == status and "error" in r.json()
        assert NoiseStore(run.app.store).silences(since=None) == []


async def test_the_proxy_header_is_trusted_only_from_the_trusted_proxies(tmp_path):
    async with Running(tmp_path, proxies="10.9.9.9") as run:
        r = await run.http.put("/api/mode", headers={
            "X-Forwarded-User": "mallory", "X-Requested-With": "fetch"}, json={
            "mode": "shutdown", "duration": "1h", "reason": "pretending"})
        assert r.status_code == 401 and "trusted_proxies" in r.json()["error"]
        assert NoiseStore(run.app.store).overrides() == []


async def test_silence_mode_and_ack_with_an_identity_are_done_and_audited(tmp_path):
    async with Running(tmp_path) as run:
        r = await run.http.post("/api/silences", headers=BEARER, json={
            "matchers": ["group=vacuum"], "duration": "2h", "reason": "FE bake-out"})
        assert r.status_code == 201, r.text
        silence = r.json()
        assert (silence["author"], silence["covers"]) == ("ana", ["fe-vacuum"])
        ended = await run.http.delete(f"/api/silences/{silence['id']}", headers=BEARER)
        assert ended.json()["state"] == "expired"
        assert (await run.http.delete("/api/silences/999", headers=BEARER)).status_code == 404

        proxy = {"X-Forwarded-User": "ben", "X-Requested-With": "fetch"}
        mode = await run.http.put("/api/mode", headers=proxy, json={
            "mode": "maintenance", "duration": "1h", "reason": "vacuum work"})
        assert mode.json()["override"]["author"] == "ben"
        cleared = await run.http.delete("/api/mode", headers=BEARER)
        assert cleared.json()["override"] is None

        await run.alarm()
        ack = await run.http.post("/api/acks", headers=BEARER, json={"check": "dcm-temp"})
        assert ack.json() == {"ok": True, "message": "acknowledged dcm-temp", "queued": False,
                              "engine_running": True}
        assert run.app.store.state("dcm-temp").acked_by == "ana"
        got = [(e.action, e.actor, e.via) for e in audit.entries(run.app.store)]
        assert got == [("silence", "ana", "web"), ("unsilence", "ana", "web"),
                       ("mode set", "ben", "web"), ("mode clear", "ana", "web"),
                       ("ack", "ana", "web")]
        log = (await run.http.get("/api/audit")).json()
        assert [e["action"] for e in log] == [a for a, _, _ in got]


@pytest.mark.parametrize("body, status, says", [
    ({"matchers": ["dcm-temp"], "duration": "2h"}, 422, "reason"),
    ({"matchers": ["dcm-temp"], "duration": "2h", "reason": "x", "extra": 1}, 422, "extra"),
    ({"matchers": ["dcm-temp"], "until": "2020-01-01T00:00", "reason": "x"}, 400,
     "in the past"),
    ({"matchers": ["nothing=here"], "duration": "2h", "reason": "x"}, 400, "no check has"),
    ({"matchers": ["dcm-temp"], "reason": "x"}, 400, "say how long"),
])
async def test_bad_input_is_a_clear_4xx_and_changes_nothing(tmp_path, body, status, says):
    async with Running(tmp_path) as run:
        r = await run.http.post("/api/silences", headers=BEARER, json=body)
        assert r.status_code == status, r.text
        assert says in r.json()["error"]
        assert NoiseStore(run.app.store).silences(since=None) == []


async def test_malformed_json_and_a_huge_body(tmp_path):
    async with Running(tmp_path) as run:
        r = await run.http.post("/api/acks", headers={**BEARER, "Content-Type":
                                                      "application/json"}, content=b"{nope")
        assert r.status_code == 422 and "error" in r.json()
        big = await run.http.post("/api/acks", headers=BEARER, content=b"x" * 200_000)
        assert big.status_code == 413


async def test_live_updates_arrive_as_server_sent_events(tmp_path):
    async with Running(tmp_path) as run:
        async with run.http.stream("GET", "/api/events") as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            lines = stream.aiter_lines()
            await run.alarm()
            event = data = None
            async with asyncio.timeout(10):
                async for line in lines:
                    if line.startswith("event: "):
                        event = line.removeprefix("event: ")
                    elif line.startswith("data: ") and event == "transition":
                        data = json.loads(line.removeprefix("data: "))
                        if data["new"] == "MAJOR":
                            break
            assert (data["check"], data["new"]) == ("dcm-temp", "MAJOR")


async def test_metrics_in_prometheus_text_format(tmp_path):
    async with Running(tmp_path) as run:
        await run.alarm()
        text = (await run.http.get("/metrics")).text
        assert 'beamwatch_checks{beamline="I04",severity="MAJOR"} 1.0' in text
        assert 'beamwatch_checks{beamline="I04",severity="OK"} 1.0' in text
        assert 'beamwatch_samples_total{beamline="I04",source="ca"}' in text
        assert 'beamwatch_healthy{beamline="I04"} 1.0' in text
        assert "beamwatch_event_loop_lag_seconds" in text
        assert 'beamwatch_event_loop_tasks{beamline="I04"}' in text  # leaks show in soaks


def prometheus_binary() -> str:
    found = shutil.which("prometheus")
    if found:
        return found
    if os.environ.get("CI") == "true":
        pytest.fail("prometheus is needed in CI: .ci/run installs it (apt-get install "
                    "prometheus)")
    pytest.skip("prometheus not installed; apt-get install prometheus to run this test")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_prometheus_scrapes_the_checks_by_severity(tmp_path):
    binary = prometheus_binary()
    async with Running(tmp_path) as run:
        await run.alarm()
        target = run.url.removeprefix("http://")
        port = free_port()
        (tmp_path / "prometheus.yml").write_text(
            "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
            "scrape_configs:\n"
            f"  - job_name: beamwatch\n    static_configs: [{{targets: ['{target}']}}]\n")
        prom = subprocess.Popen(
            [binary, f"--config.file={tmp_path / 'prometheus.yml'}",
             f"--storage.tsdb.path={tmp_path / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{port}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            query = 'beamwatch_checks{severity="MAJOR"}'
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
                deadline = time.monotonic() + 60
                result = []
                while time.monotonic() < deadline and not result:
                    await asyncio.sleep(0.5)
                    try:
                        r = await client.get("/api/v1/query", params={"query": query})
                    except httpx.TransportError:
                        continue
                    result = r.json().get("data", {}).get("result", [])
                assert result, "Prometheus never got beamwatch_checks from /metrics"
                [series] = result
                assert series["metric"]["beamline"] == "I04"
                assert series["value"][1] == "1"
                up = (await client.get("/api/v1/query", params={"query": "up"})).json()
                assert up["data"]["result"][0]["value"][1] == "1"
        finally:
            prom.terminate()
            prom.wait(timeout=20)
