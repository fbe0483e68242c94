"""HTTP checks end to end: a real App and a real `beamwatch run` against a status
service on loopback go OK → MAJOR when it says FAULT; the days left on a real TLS
certificate; the simulated beamline's GDA status and its `gda-down` fault."""

from __future__ import annotations

import asyncio
import json
import os
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Response

from beamwatch.app import App
from beamwatch.config.schema import Config
from beamwatch.model import Severity
from beamwatch.sources.http import HttpSource, cert_not_after

BIN = Path(sys.executable).parent / "beamwatch"


class StatusPage:
    """GDA's /api/status on a pytest-httpserver, with a state the test sets."""

    def __init__(self, httpserver):
        self.state = "RUNNING"
        httpserver.expect_request("/api/status").respond_with_handler(
            lambda request: Response(json.dumps({"state": self.state}),
                                     content_type="application/json"))


def write_config(tmp_path: Path, base_url: str) -> Path:
    cfg = tmp_path / "bw.yaml"
    cfg.write_text(f"""
beamline: TEST
storage: {{url: "sqlite:///{tmp_path / 'bw.db'}"}}
sources:
  gda: {{kind: http, base_url: "{base_url}", timeout: 2s}}
checks:
  - id: gda-server
    source: gda
    get: /api/status
    json: state
    when: "value != 'RUNNING'"
    every: 200ms
""")
    return cfg


async def until(predicate, what: str, timeout: float = 15.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def test_ok_then_fault_is_major_through_a_real_app(tmp_path, httpserver):
    page = StatusPage(httpserver)
    app = App(write_config(tmp_path, httpserver.url_for("")))
    assert isinstance(app.sources["gda"], HttpSource)
    await app.start()
    try:
        def severity():
            state = app.engine.state_of("gda-server")
            return state.current if state else None

        await until(lambda: severity() == Severity.OK, "OK")
        page.state = "FAULT"
        await until(lambda: severity() == Severity.MAJOR, "MAJOR")
        assert app.engine.sample_of("gda-server").value == "FAULT"
    finally:
        await app.close()


def test_beamwatch_run_reports_major_in_status_json(tmp_path, httpserver):
    page = StatusPage(httpserver)
    cfg = write_config(tmp_path, httpserver.url_for(""))
    proc = subprocess.Popen([str(BIN), "run", "-c", str(cfg)], env=dict(os.environ),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def check():
        out = subprocess.run([str(BIN), "status", "--json", "-c", str(cfg)],
                             capture_output=True, text=True, check=True, env=dict(os.environ))
        [row] = [c for c in json.loads(out.stdout)["checks"] if c["id"] == "gda-server"]
        return row

    def wait(predicate, what):
        deadline = time.monotonic() + 30
        while not predicate():
            assert proc.poll() is None, proc.stdout.read()
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}: {check()}")
            time.sleep(0.2)

    try:
        wait(lambda: check()["severity"] == "OK" and check().get("value") is not None, "OK")
        page.state = "FAULT"
        wait(lambda: check()["severity"] == "MAJOR", "MAJOR")
        assert "FAULT" in json.dumps(check())
    finally:
        proc.terminate()
        proc.wait(20)


# -- TLS ----------------------------------------------------------------------------------


@pytest.fixture
def tls_server(tmp_path):
    """A pytest-httpserver on https with a self-signed certificate valid for 30 days."""
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server = HTTPServer(host="127.0.0.1", port=0, ssl_context=context)
    server.start()
    server.expect_request("/api/status").respond_with_json({"state": "RUNNING"})
    yield server, cert
    server.clear()
    server.stop()


async def poll(base_url: str, check: dict, **settings):
    config = Config.model_validate({
        "beamline": "T", "sources": {"s": {"kind": "http", "base_url": base_url, **settings}},
        "checks": [{"id": "c", "source": "s", **check}]})
    source = HttpSource.from_config("s", config)
    await source.open()
    try:
        return await source.poll(source.checks["c"])
    finally:
        await source.close()


async def test_cert_days_is_the_days_until_the_certificate_expires(tls_server):
    server, cert = tls_server
    sample = await poll(server.url_for(""), {"get": "/api/status", "measure": "cert_days"},
                        verify=False)
    assert sample.connected, sample.error
    assert 29.9 < sample.value <= 30.0
    der = ssl.PEM_cert_to_DER_cert(cert.read_text())
    expected = ssl._ssl._test_decode_cert(str(cert))["notAfter"]  # the same date, from ssl
    assert cert_not_after(der).strftime("%b %d %H:%M:%S %Y") == " ".join(expected.split()[:4])


async def test_an_untrusted_certificate_is_a_clear_error(tls_server):
    server, _ = tls_server
    sample = await poll(server.url_for(""), {"get": "/api/status", "json": "state"})
    assert not sample.connected
    assert sample.error.startswith("TLS certificate of 127.0.0.1:")
    assert "not trusted" in sample.error and "self-signed" in sample.error


# -- the simulated beamline -----------------------------------------------------------------


def test_sim_status_service_and_the_gda_down_fault(tmp_path):
    from beamwatch.sim import SimBeamline

    with SimBeamline(prefix="HT:", base_port=0, workdir=tmp_path) as sim:
        url = f"{sim.layout.status_url}/api/status"
        with httpx.Client() as client:
            def state():
                return client.get(url).json()["state"]

            assert state() == "RUNNING"
            sim.fault("gda-down")
            deadline = time.monotonic() + 10
            while state() != "FAULT":
                assert time.monotonic() < deadline, "gda-down did not reach the service"
                time.sleep(0.05)
            sim.clear()
            while state() != "RUNNING":
                assert time.monotonic() < deadline + 10, "clear did not reach the service"
                time.sleep(0.05)
