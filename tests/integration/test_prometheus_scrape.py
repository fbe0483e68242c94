"""A real Prometheus (Debian's `prometheus`) scrapes beamwatch's /metrics: the target is
up and the checks-by-severity series reads what the beamline shows. In CI a missing
prometheus binary fails the test; on a workstation it skips, saying how to install it."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import time

import httpx
import pytest

from tests.integration.test_web_api import Running

pytestmark = pytest.mark.integration


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
