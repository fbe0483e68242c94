"""Apprise URLs against fake services on loopback, asserting the requests the
real services expect: signal-cli-rest-api (POST /v2/send), the WhatsApp Cloud
(Graph) API, and ntfy.

Apprise's whatsapp:// plugin has no host override (graph.facebook.com is a
class constant), so that one test points the plugin class's `notify_url` at
the local server with monkeypatch; signal:// and ntfy:// take host:port in
the URL, as in production.
"""

from __future__ import annotations

import json
import logging
import socket
import time
from typing import Any

import apprise.plugins.whatsapp as apprise_whatsapp
import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from beamwatch.config.schema import Config
from beamwatch.notify import AppriseNotifier, ErrorKind, Renderer, build_registry
from beamwatch.notify.render import sample_message

pytestmark = pytest.mark.integration

RENDERER = Renderer()
ALARM = sample_message("alarm")
SUBJECT = RENDERER.render("subject", ALARM)
TEXT = RENDERER.render("text", ALARM)


class Recorder:
    def __init__(self, server: HTTPServer, path: str, status: int = 200,
                 body: str = '{"timestamp": "1790000000"}', delay: float = 0.0):
        self.requests: list[tuple[Request, Any]] = []
        self.status, self.body, self.delay = status, body, delay
        server.expect_request(path, method="POST").respond_with_handler(self.handle)

    def handle(self, request: Request) -> Response:
        self.requests.append((request, json.loads(request.get_data() or b"null")))
        time.sleep(self.delay)
        return Response(self.body, status=self.status, content_type="application/json")


def notifier(url: str, timeout: float = 2.0, **kw: Any) -> AppriseNotifier:
    return AppriseNotifier("channel:x", url, renderer=RENDERER, timeout=timeout, **kw)


async def test_signal_cli_rest_api_request(httpserver: HTTPServer) -> None:
    rec = Recorder(httpserver, "/v2/send", status=201)
    url = f"signal://localhost:{httpserver.port}/+441111111111/+442222222222"
    d = await notifier(url).send(ALARM)
    assert (d.ok, d.retry) == (True, False)
    assert d.detail == f"Signal API {url}: accepted"
    [(request, body)] = rec.requests
    assert request.headers["Content-Type"] == "application/json"
    assert body == {
        "message": f"{SUBJECT}\r\n{TEXT}".rstrip(),  # Signal has no title: first line
        "number": "+441111111111",
        "recipients": ["+442222222222"],
        "text_mode": "normal",
    }


async def test_person_signal_uses_the_channel_and_their_number(httpserver: HTTPServer) -> None:
    rec = Recorder(httpserver, "/v2/send")
    config = Config.model_validate({
        "beamline": "I04",
        "channels": {"signal": {"url": f"signal://localhost:{httpserver.port}/+441111111111"}},
        "people": {"ana": {"signal": "+442222222222"}},
    })
    registry = build_registry(config, renderer=RENDERER)
    d = await registry["person:ana/signal"].send(ALARM)
    await registry.aclose()
    assert d.ok
    [(_, body)] = rec.requests
    assert (body["number"], body["recipients"]) == ("+441111111111", ["+442222222222"])


async def test_whatsapp_cloud_api_request(
    httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    cls = apprise_whatsapp.NotifyWhatsApp
    monkeypatch.setattr(
        cls, "notify_url", f"http://localhost:{httpserver.port}" + "/{fb_ver}/{phone_id}/messages")
    rec = Recorder(httpserver, f"/{cls.fb_graph_version}/1234567890/messages",
                   body='{"messages": [{"id": "wamid.1"}]}')
    token = "EAAGwhatsappTOKEN123"
    d = await notifier(f"whatsapp://{token}@1234567890/", targets=["+443333333333"]).send(ALARM)
    assert d.ok, d.detail
    [(request, body)] = rec.requests
    assert request.headers["Authorization"] == f"Bearer {token}"
    assert body == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": "+443333333333",
        "type": "text",
        "text": {"body": f"{SUBJECT}\r\n{TEXT}".rstrip()},
    }
    assert token not in d.detail and "1234567890" not in d.detail


async def test_ntfy_request(httpserver: HTTPServer) -> None:
    rec = Recorder(httpserver, "/")
    token = "tk_ntfyTOKENsecret42"
    d = await notifier(f"ntfy://localhost:{httpserver.port}/i04-alarms?token={token}").send(ALARM)
    assert d.ok, d.detail
    [(request, body)] = rec.requests
    assert request.headers["Authorization"] == f"Bearer {token}"
    assert body == {"topic": "i04-alarms", "title": SUBJECT, "message": TEXT.rstrip()}
    assert "What to do:\nGuidance: Check the LN2 flow on the DCM cryocooler" in body["message"]
    assert token not in d.detail


@pytest.mark.parametrize("status", [500, 503, 400, 429])
async def test_failures_are_retryable_with_apprise_reason(
    httpserver: HTTPServer, status: int
) -> None:
    Recorder(httpserver, "/v2/send", status=status, body='{"error": "no"}')
    d = await notifier(f"signal://localhost:{httpserver.port}/+441111111111/+442222222222"
                       ).send(ALARM)
    assert (d.ok, d.retry, d.error, d.status) == (False, True, ErrorKind.UNKNOWN, status)
    assert "Failed to send" in d.detail and f"error={status}" in d.detail


async def test_connection_refused_is_retryable() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    d = await notifier(f"signal://127.0.0.1:{port}/+441111111111/+442222222222").send(ALARM)
    assert (d.ok, d.retry) == (False, True)
    assert "Connection error" in d.detail


async def test_slow_service_is_cut(httpserver: HTTPServer) -> None:
    Recorder(httpserver, "/", delay=1.0)
    t0 = time.monotonic()
    d = await notifier(f"ntfy://localhost:{httpserver.port}/i04", timeout=0.2).send(ALARM)
    assert time.monotonic() - t0 < 0.9
    assert (d.ok, d.retry) == (False, True)
    assert d.error in (ErrorKind.TIMEOUT, ErrorKind.UNKNOWN)


async def test_secrets_in_apprise_urls_never_show(
    httpserver: HTTPServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    Recorder(httpserver, "/v2/send", status=401, body='{"error": "unauthorized"}')
    Recorder(httpserver, "/", status=500)
    password, token = "signalPASSsecret9", "tk_ntfyOTHERsecret77"
    deliveries = [
        await notifier(f"signal://bw:{password}@localhost:{httpserver.port}/+441111111111/"
                       "+442222222222").send(ALARM),
        await notifier(f"ntfy://localhost:{httpserver.port}/i04?token={token}").send(ALARM),
    ]
    assert [d.ok for d in deliveries] == [False, False]
    assert any(r.name == "apprise" for r in caplog.records)
    texts = [d.detail for d in deliveries] + [
        r.getMessage() for r in caplog.records if r.name != "werkzeug"]
    for text in texts:
        assert password not in text and token not in text


def test_unknown_scheme_is_refused_at_build() -> None:
    from beamwatch.notify import AppriseUrlError

    with pytest.raises(AppriseUrlError, match="Apprise cannot use this bogus:// URL"):
        notifier("bogus://secret-value@host/")
