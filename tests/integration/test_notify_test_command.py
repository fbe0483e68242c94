"""notify_test(config, target): a YAML config through the real loader, real
test messages to a webhook, an SMTP server, a fake Slack API and a fake
signal-cli-rest-api on loopback."""

from __future__ import annotations

import email
import email.policy
import json
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from beamwatch.config import ConfigError, parse_config
from beamwatch.notify import notify_test

pytestmark = pytest.mark.integration


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Inbox:
    def __init__(self) -> None:
        self.envelopes: list[Any] = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        self.envelopes.append(envelope)
        return "250 OK"


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    inbox, port = Inbox(), free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


@pytest.fixture
def services(httpserver: HTTPServer) -> dict[str, list[tuple[Request, Any]]]:
    seen: dict[str, list[tuple[Request, Any]]] = {}

    def record(name: str, answer: Any):
        def handler(request: Request) -> Response:
            body = json.loads(request.get_data())
            seen.setdefault(name, []).append((request, body))
            out = answer(body) if callable(answer) else answer
            return Response(json.dumps(out), content_type="application/json")
        return handler

    httpserver.expect_request("/hook", method="POST").respond_with_handler(
        record("hook", {"ok": True}))
    httpserver.expect_request("/api/chat.postMessage", method="POST").respond_with_handler(
        record("slack", lambda b: {"ok": True, "channel": "D0456DM", "ts": "1790000000.0001"}))
    httpserver.expect_request("/v2/send", method="POST").respond_with_handler(
        record("signal", {"timestamp": "1"}))
    return seen


CONFIG = """
beamline: I04
timezone: Europe/London
channels:
  hook: {{kind: webhook, webhook_url: "http://localhost:{http}/hook", timeout: 2s}}
  mail: {{kind: email, smtp_host: 127.0.0.1, smtp_port: {smtp}, sender: bw@i04.example.org,
         to: [ops@example.org]}}
  slack: {{kind: slack, token: "${{SLACK_BOT_TOKEN}}", channel: "#i04-ops",
          api_url: "http://localhost:{http}/api/"}}
  signal: {{url: "signal://localhost:{http}/+441111111111"}}
people:
  ana: {{email: ana@example.org, slack: U0123ABC, signal: "+442222222222",
        order: [slack, signal, email]}}
"""


def load(http: int, smtp: int) -> Any:
    return parse_config(CONFIG.format(http=http, smtp=smtp), "beamwatch.yaml",
                        env={"SLACK_BOT_TOKEN": "xoxb-notify-test-token"})


async def test_channel(httpserver: HTTPServer, smtp, services) -> None:
    result = await notify_test(load(httpserver.port, smtp[1]), "channel:hook", now=1_790_000_000)
    assert list(result) == ["channel:hook"]
    assert result["channel:hook"].ok
    [(_, body)] = services["hook"]
    assert (body["version"], body["kind"], body["beamline"]) == (1, "test", "I04")
    assert body["summary"] == "[I04] TEST: beamwatch can reach you here"
    assert body["time"] == "2026-09-21T14:13:20.000Z"


async def test_person_gets_one_test_per_destination_in_order(
    httpserver: HTTPServer, smtp, services
) -> None:
    inbox, port = smtp
    result = await notify_test(load(httpserver.port, port), "person:ana")
    assert list(result) == ["person:ana/slack", "person:ana/signal", "person:ana/email"]
    assert all(d.ok for d in result.values()), result
    assert result["person:ana/slack"].ref == "D0456DM:1790000000.0001"
    [(request, slack)] = services["slack"]
    assert request.headers["Authorization"] == "Bearer xoxb-notify-test-token"
    assert slack["channel"] == "U0123ABC"
    [(_, signal)] = services["signal"]
    assert (signal["number"], signal["recipients"]) == ("+441111111111", ["+442222222222"])
    [envelope] = inbox.envelopes
    assert envelope.rcpt_tos == ["ana@example.org"]
    msg = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
    assert msg["Subject"] == "[I04] TEST: beamwatch can reach you here"
    assert msg.get_body(("plain",)) is not None and msg.get_body(("html",)) is not None


async def test_one_destination_of_a_person(httpserver: HTTPServer, smtp, services) -> None:
    result = await notify_test(load(httpserver.port, smtp[1]), "person:ana/signal")
    assert list(result) == ["person:ana/signal"] and result["person:ana/signal"].ok
    assert "slack" not in services


def test_misconfigured_person_is_a_config_error_with_its_line(httpserver: HTTPServer, smtp):
    text = (CONFIG.format(http=httpserver.port, smtp=smtp[1])
            + '  ben: {whatsapp: "+443333333333"}\n')
    with pytest.raises(ConfigError, match=r"beamwatch.yaml:14:\d+: people.ben.whatsapp: "
                                          "ben's whatsapp: no channel"):
        parse_config(text, "beamwatch.yaml", env={"SLACK_BOT_TOKEN": "xoxb-notify-test-token"})


async def test_unknown_target(httpserver: HTTPServer, smtp) -> None:
    with pytest.raises(KeyError, match="no destination 'channel:nope'"):
        await notify_test(load(httpserver.port, smtp[1]), "channel:nope")


async def test_failure_is_a_delivery_not_an_exception(smtp) -> None:
    # nothing listens on the HTTP port: the webhook test fails, with a reason
    result = await notify_test(load(free_port(), smtp[1]), "channel:hook")
    d = result["channel:hook"]
    assert (d.ok, d.retry) == (False, True)
    assert "connection refused" in d.detail
