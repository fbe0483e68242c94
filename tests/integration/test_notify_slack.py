"""Slack through slack_sdk against a fake Slack Web API on loopback.

The fake answers like slack.com/api: HTTP 200 with {"ok": true, ...} or
{"ok": false, "error": "..."}, HTTP 429 with Retry-After when rate limited.
"""

from __future__ import annotations

import json
import logging
import socket
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from beamwatch.config.types import Secret
from beamwatch.notify import ErrorKind, Renderer, SlackNotifier
from beamwatch.notify.render import sample_message

pytestmark = pytest.mark.integration

TOKEN = "xoxb-1111-2222-slackTESTtoken"
RENDERER = Renderer()


class FakeSlack:
    """Records every Web API call; answers from a script per method."""

    def __init__(self, server: HTTPServer):
        self.server = server
        self.calls: list[tuple[str, dict[str, Any], Request]] = []
        self.script: dict[str, list[Callable[[dict], Response]]] = {}
        server.expect_request("/api/chat.postMessage", method="POST").respond_with_handler(
            lambda r: self._handle("chat.postMessage", r))
        server.expect_request("/api/chat.update", method="POST").respond_with_handler(
            lambda r: self._handle("chat.update", r))

    @property
    def api_url(self) -> str:
        return self.server.url_for("/api/")

    def answer(self, method: str, *responses: Callable[[dict], Response]) -> None:
        self.script.setdefault(method, []).extend(responses)

    def _handle(self, method: str, request: Request) -> Response:
        body = json.loads(request.get_data())
        self.calls.append((method, body, request))
        queue = self.script.get(method)
        if queue:
            return queue.pop(0)(body)
        return ok(body)


def ok(body: dict, ts: str = "1790000000.000100") -> Response:
    channel = body["channel"]
    channel = {"#i04-ops": "C0123OPS", "U0123ABC": "D0456DM"}.get(channel, channel)
    return Response(json.dumps({"ok": True, "channel": channel, "ts": body.get("ts", ts)}),
                    content_type="application/json")


def error(code: str, status: int = 200, **headers: str) -> Callable[[dict], Response]:
    return lambda body: Response(json.dumps({"ok": False, "error": code}), status=status,
                                 headers=headers, content_type="application/json")


@pytest.fixture
def slack(httpserver: HTTPServer) -> FakeSlack:
    return FakeSlack(httpserver)


def notifier(slack: FakeSlack, channel: str = "#i04-ops", timeout: float = 2.0) -> SlackNotifier:
    return SlackNotifier("channel:ops-slack", Secret(TOKEN), channel, renderer=RENDERER,
                         api_url=slack.api_url, timeout=timeout)


async def test_new_alarm_is_posted_with_blocks_and_text(slack: FakeSlack) -> None:
    m = sample_message("alarm")
    d = await notifier(slack).send(m)
    assert (d.ok, d.ref) == (True, "C0123OPS:1790000000.000100")
    [(method, body, request)] = slack.calls
    assert method == "chat.postMessage"
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert request.headers["Content-Type"].startswith("application/json")
    assert body == {
        "channel": "#i04-ops",
        "text": RENDERER.render("mrkdwn", m),
        "blocks": RENDERER.blocks(m),
        "unfurl_links": False,
        "unfurl_media": False,
    }
    # what to do is in the notification people see, and in its blocks
    assert "*What to do:*\nGuidance: Check the LN2 flow on the DCM cryocooler" in body["text"]
    assert "Check the LN2 flow on the DCM cryocooler" in json.dumps(body["blocks"])


async def test_dm_to_a_person(slack: FakeSlack) -> None:
    d = await notifier(slack, channel="U0123ABC").send(sample_message("alarm"))
    assert d.ref == "D0456DM:1790000000.000100"
    assert slack.calls[0][1]["channel"] == "U0123ABC"


async def test_ack_updates_the_original_and_replies_in_its_thread(slack: FakeSlack) -> None:
    m = sample_message("ack").threaded("C0123OPS:1790000000.000100")
    d = await notifier(slack).send(m)
    assert (d.ok, d.ref) == (True, "C0123OPS:1790000000.000100")  # the anchor stays
    (m1, update, _), (m2, reply, _) = slack.calls
    assert (m1, m2) == ("chat.update", "chat.postMessage")
    assert update == {
        "channel": "C0123OPS", "ts": "1790000000.000100",
        "text": RENDERER.render("mrkdwn", m), "blocks": RENDERER.blocks(m),
    }
    assert reply == {
        "channel": "C0123OPS", "thread_ts": "1790000000.000100",
        "text": RENDERER.render("mrkdwn", m), "reply_broadcast": False,
        "unfurl_links": False, "unfurl_media": False,
    }
    assert "Acknowledged by ana" in reply["text"]
    assert "updated 1790000000.000100" in d.detail and "replied in thread" in d.detail


async def test_resolve_updates_in_place(slack: FakeSlack) -> None:
    m = sample_message("resolve").threaded("C0123OPS:1790000000.000100")
    d = await notifier(slack).send(m)
    assert d.ok
    update = slack.calls[0][1]
    assert "Back to OK" in json.dumps(update["blocks"])


async def test_repeat_and_escalation_are_broadcast(slack: FakeSlack) -> None:
    for kind in ("repeat", "escalation"):
        slack.calls.clear()
        await notifier(slack).send(sample_message(kind).threaded("C0123OPS:1.2"))
        assert slack.calls[1][1]["reply_broadcast"] is True


async def test_original_gone_still_replies(slack: FakeSlack) -> None:
    slack.answer("chat.update", error("message_not_found"))
    d = await notifier(slack).send(sample_message("ack").threaded("C0123OPS:1.2"))
    assert (d.ok, d.ref) == (True, "C0123OPS:1.2")
    assert "original not updated (message_not_found)" in d.detail


async def test_thread_gone_posts_a_new_anchor(slack: FakeSlack) -> None:
    slack.answer("chat.update", error("message_not_found"))
    slack.answer("chat.postMessage", error("thread_not_found"))
    d = await notifier(slack).send(sample_message("resolve").threaded("C0999:1.2"))
    assert (d.ok, d.ref) == (True, "C0123OPS:1790000000.000100")
    assert [c[0] for c in slack.calls] == ["chat.update", "chat.postMessage", "chat.postMessage"]
    assert slack.calls[2][1]["channel"] == "#i04-ops" and "thread_ts" not in slack.calls[2][1]


@pytest.mark.parametrize(
    ("response", "kind", "retry", "retry_after", "text"),
    [
        (error("invalid_auth"), ErrorKind.AUTH, False, None, "invalid_auth (check the bot token"),
        (error("channel_not_found"), ErrorKind.REJECTED, False, None,
         "channel_not_found (check the channel, and invite the bot to it)"),
        (error("not_in_channel"), ErrorKind.REJECTED, False, None, "not_in_channel"),
        (error("invalid_blocks"), ErrorKind.REJECTED, False, None, "invalid_blocks"),
        (error("ratelimited", status=429, **{"Retry-After": "12"}), ErrorKind.RATE_LIMITED,
         True, 12.0, "rate limited by Slack (retry after 12s)"),
        (error("internal_error"), ErrorKind.SERVER, True, None, "internal_error"),
        (lambda body: Response("<html>Bad Gateway</html>", status=502), ErrorKind.SERVER, True,
         None, "answered HTTP 502"),
        (lambda body: Response("<html>Not Found</html>", status=404), ErrorKind.REJECTED, False,
         None, "answered HTTP 404"),
    ],
)
async def test_slack_errors_are_classified(
    slack: FakeSlack, response, kind: ErrorKind, retry: bool, retry_after, text: str
) -> None:
    slack.answer("chat.postMessage", response)
    d = await notifier(slack).send(sample_message("alarm"))
    assert (d.ok, d.retry, d.error, d.retry_after) == (False, retry, kind, retry_after)
    assert text in d.detail
    assert d.detail.startswith("Slack #i04-ops chat.postMessage")


async def test_permanent_error_on_update_is_not_hidden(slack: FakeSlack) -> None:
    slack.answer("chat.update", error("invalid_auth"))
    d = await notifier(slack).send(sample_message("ack").threaded("C0123OPS:1.2"))
    assert (d.ok, d.error) == (False, ErrorKind.AUTH)
    assert [c[0] for c in slack.calls] == ["chat.update"]


async def test_slow_slack_times_out(slack: FakeSlack) -> None:
    def slow(body: dict) -> Response:
        time.sleep(0.8)
        return ok(body)

    slack.answer("chat.postMessage", slow)
    t0 = time.monotonic()
    d = await notifier(slack, timeout=0.2).send(sample_message("alarm"))
    assert time.monotonic() - t0 < 0.75
    assert (d.ok, d.retry, d.error) == (False, True, ErrorKind.TIMEOUT)


async def test_connection_refused() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    n = SlackNotifier("channel:x", TOKEN, "#x", renderer=RENDERER,
                      api_url=f"http://127.0.0.1:{port}/api/", timeout=1)
    d = await n.send(sample_message("alarm"))
    assert (d.ok, d.retry, d.error) == (False, True, ErrorKind.CONNECTION)
    assert d.detail == "Slack #x: connection refused"


async def test_bot_token_never_shows(slack: FakeSlack, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    slack.answer("chat.postMessage", error("invalid_auth"))
    slack.answer("chat.update", error("token_revoked"))
    deliveries = [
        await notifier(slack).send(sample_message("alarm")),
        await notifier(slack).send(sample_message("ack").threaded("C1:2.3")),
    ]
    assert [d.error for d in deliveries] == [ErrorKind.AUTH, ErrorKind.AUTH]
    assert any(r.name.startswith("slack_sdk") for r in caplog.records)  # slack_sdk did log
    texts = [d.detail for d in deliveries] + [
        r.getMessage() for r in caplog.records if r.name != "werkzeug"]
    assert texts and all(TOKEN not in t for t in texts)
    assert str(replace(deliveries[0])).find(TOKEN) == -1
