"""The generic webhook against a real HTTP server on loopback."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
from collections.abc import Iterator

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from beamwatch import __version__
from beamwatch.config.types import Secret
from beamwatch.model import Severity
from beamwatch.notify import ErrorKind, Message, Related, Renderer, WebhookNotifier

pytestmark = pytest.mark.integration

RENDERER = Renderer()
MESSAGE = Message(
    kind="alarm",
    beamline="I04",
    title="DCM crystal temperature",
    severity=Severity.MAJOR,
    previous_severity=Severity.MINOR,
    check_ids=("dcm-temp",),
    dedup_key="I04/dcm-temp",
    id="n-17",
    value="141.2",
    text="BL04I-OP-DCM-01:TEMP1 = 141.2 above major limit 140",
    time=1_790_000_600.25,
    since=1_790_000_000.0,
    incident_id="inc-42",
    mode="user",
    link="https://beamwatch.example.org/incidents/inc-42",
    consequences=(Related("fe-shutter", "Front end shutter", Severity.MAJOR, "Closed",
                          "DEPENDENCY"),),
    labels={"group": "optics"},
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def hook(url: str, timeout: float = 2.0, **kw) -> WebhookNotifier:
    return WebhookNotifier("channel:hook", url, renderer=RENDERER, timeout=timeout, **kw)


async def test_posts_the_versioned_json_body(httpserver: HTTPServer) -> None:
    seen: list[Request] = []

    def handler(request: Request) -> Response:
        seen.append(request)
        return Response("ok", status=200)

    httpserver.expect_request("/hooks/beamwatch", method="POST").respond_with_handler(handler)
    n = hook(httpserver.url_for("/hooks/beamwatch"),
             headers={"Authorization": Secret("Bearer hook-secret-123"), "X-Team": "mx"})
    d = await n.send(MESSAGE)
    await n.aclose()
    assert (d.ok, d.retry, d.status) == (True, False, 200)
    assert d.detail == f"webhook http://localhost:{httpserver.port} answered HTTP 200"
    [request] = seen
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["Authorization"] == "Bearer hook-secret-123"
    assert request.headers["X-Team"] == "mx"
    assert request.headers["User-Agent"] == f"beamwatch/{__version__}"
    assert request.headers["Idempotency-Key"] == "n-17"
    body = json.loads(request.get_data())
    assert body == {
        "version": 1,
        "id": "n-17",
        "kind": "alarm",
        "beamline": "I04",
        "dedup_key": "I04/dcm-temp",
        "incident_id": "inc-42",
        "check_ids": ["dcm-temp"],
        "title": "DCM crystal temperature",
        "severity": "MAJOR",
        "previous_severity": "MINOR",
        "value": "141.2",
        "message": "BL04I-OP-DCM-01:TEMP1 = 141.2 above major limit 140",
        "time": "2026-09-21T14:23:20.250Z",
        "since": "2026-09-21T14:13:20.000Z",
        "mode": "user",
        "link": "https://beamwatch.example.org/incidents/inc-42",
        "actor": None,
        "escalation_level": 0,
        "labels": {"group": "optics"},
        "consequences": [{"check_id": "fe-shutter", "title": "Front end shutter",
                          "severity": "MAJOR", "value": "Closed", "muted": "DEPENDENCY"}],
        "alarms": [],
        "mode_change": None,
        "description": "",
        "runbook": "",
        "summary": "[I04] MAJOR: DCM crystal temperature = 141.2 (+1 affected)",
        "text": RENDERER.render("text", MESSAGE),
    }


@pytest.mark.parametrize(
    ("status", "headers", "kind", "retry", "retry_after"),
    [
        (500, {}, ErrorKind.SERVER, True, None),
        (503, {"Retry-After": "30"}, ErrorKind.SERVER, True, 30.0),
        (429, {"Retry-After": "7"}, ErrorKind.RATE_LIMITED, True, 7.0),
        (400, {}, ErrorKind.REJECTED, False, None),
        (404, {}, ErrorKind.REJECTED, False, None),
        (401, {}, ErrorKind.AUTH, False, None),
    ],
)
async def test_http_errors_are_classified(
    httpserver: HTTPServer, status: int, headers: dict, kind: ErrorKind, retry: bool,
    retry_after: float | None,
) -> None:
    httpserver.expect_request("/h", method="POST").respond_with_data(
        "missing field: severity", status=status, headers=headers)
    n = hook(httpserver.url_for("/h"))
    d = await n.send(MESSAGE)
    await n.aclose()
    assert (d.ok, d.retry, d.error, d.status, d.retry_after) == (
        False, retry, kind, status, retry_after)
    assert f"answered HTTP {status}" in d.detail
    if not retry:
        assert d.detail.endswith(": missing field: severity")


async def test_slow_answer_is_cut_at_the_timeout(httpserver: HTTPServer) -> None:
    def slow(request: Request) -> Response:
        time.sleep(0.8)
        return Response("late")

    httpserver.expect_request("/slow").respond_with_handler(slow)
    n = hook(httpserver.url_for("/slow"), timeout=0.2)
    t0 = time.monotonic()
    d = await n.send(MESSAGE)
    await n.aclose()
    assert time.monotonic() - t0 < 0.6
    assert (d.ok, d.retry, d.error) == (False, True, ErrorKind.TIMEOUT)
    # the server answers 0.8 s in and logs the request then: wait for it here, or the
    # entry lands in the log of whichever test uses the server next
    deadline = time.monotonic() + 5
    while not httpserver.log and time.monotonic() < deadline:
        await asyncio.sleep(0.05)


@pytest.fixture
def silent_server() -> Iterator[int]:
    """Accepts TCP connections (kernel backlog) and never answers."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        yield s.getsockname()[1]


async def test_hanging_server_is_cut_at_the_timeout(silent_server: int) -> None:
    n = hook(f"http://127.0.0.1:{silent_server}/h", timeout=0.3)
    t0 = time.monotonic()
    d = await n.send(MESSAGE)
    await n.aclose()
    assert 0.25 < time.monotonic() - t0 < 1.0
    assert (d.ok, d.retry, d.error) == (False, True, ErrorKind.TIMEOUT)


async def test_connection_refused_is_retryable() -> None:
    n = hook(f"http://127.0.0.1:{free_port()}/h")
    d = await n.send(MESSAGE)
    await n.aclose()
    assert (d.ok, d.retry, d.error) == (False, True, ErrorKind.CONNECTION)
    assert "connection refused" in d.detail


async def test_dns_failure_is_retryable() -> None:
    n = hook("http://beamwatch-test.invalid/h", timeout=3)
    d = await n.send(MESSAGE)
    await n.aclose()
    assert (d.ok, d.retry, d.error) == (False, True, ErrorKind.DNS)
    assert "cannot resolve the host name" in d.detail


async def test_unsupported_scheme_is_permanent() -> None:
    n = hook("ftp://example.org/h")
    d = await n.send(MESSAGE)
    assert (d.ok, d.retry, d.error) == (False, False, ErrorKind.CONFIG)


async def test_template_error_at_send_is_a_permanent_config_failure(
    httpserver: HTTPServer, tmp_path
) -> None:
    (tmp_path / "alarm.text.j2").write_text("line 1\n{{ m.labels.owner }}\n")
    renderer = Renderer(tmp_path, validate=False)  # validation would have caught it at load
    n = WebhookNotifier("channel:hook", httpserver.url_for("/h"), renderer=renderer)
    d = await n.send(MESSAGE)
    await n.aclose()
    assert (d.ok, d.retry, d.error) == (False, False, ErrorKind.CONFIG)
    assert d.detail.startswith(f"template {tmp_path / 'alarm.text.j2'}:2: UndefinedError")
    assert httpserver.log == []


async def test_token_in_url_and_header_never_shows(
    httpserver: HTTPServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="httpx")  # an in-process CLI run may have quieted it
    token = "T0KEN0123456789abcdefWXYZ"
    httpserver.expect_request(f"/services/{token}").respond_with_data(
        "invalid_token", status=403)
    n = hook(httpserver.url_for(f"/services/{token}") + "?sig=sig-secret-99",
             headers={"X-Api-Key": Secret("header-secret-42")})
    d = await n.send(MESSAGE)
    await n.aclose()
    assert (d.ok, d.error) == (False, ErrorKind.AUTH)
    assert any("HTTP Request: POST" in r.getMessage() for r in caplog.records)  # httpx logged
    ours = [r.getMessage() for r in caplog.records if r.name != "werkzeug"]  # not the server's
    for text in [d.detail, *ours]:
        for secret in (token, "sig-secret-99", "header-secret-42"):
            assert secret not in text
