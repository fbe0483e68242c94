"""FakeSlack (tests/support/fake_slack.py) against the real slack_sdk clients: what the
fake records is what slack_sdk sends, and slack_sdk accepts what the fake answers."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler
from slack_sdk.socket_mode.aiohttp import SocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook import WebhookClient

from tests.support.fake_slack import FakeSlack

pytestmark = pytest.mark.integration

BOT_TOKEN = "xoxb-1111-2222-fakeslack"
APP_TOKEN = "xapp-1-A0FAKEAPP-3333-fakeslack"
# A real 1x1 PNG, as `history` would upload.
PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAC"
                       "hwGA60e6kgAAAABJRU5ErkJggg==")
BLOCKS = [{"type": "section", "text": {"type": "mrkdwn", "text": "*I04* beam lost"}}]


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    with FakeSlack() as fake:
        fake.channels["i04-ops"] = "C0123OPS"
        yield fake


@pytest.fixture
def client(slack: FakeSlack) -> WebClient:
    return WebClient(token=BOT_TOKEN, base_url=slack.url)


def test_post_message_is_recorded_with_its_blocks(slack: FakeSlack, client: WebClient):
    first = client.chat_postMessage(channel="#i04-ops", text="I04 beam lost", blocks=BLOCKS)

    call = slack.wait_for_call("chat.postMessage")
    assert (call.token, call.args["channel"], call.args["blocks"]) == \
        (BOT_TOKEN, "#i04-ops", BLOCKS)
    assert (first["channel"], first["ts"]) == ("C0123OPS", "1790000000.000100")
    assert first["message"]["blocks"] == BLOCKS

    # Form-encoded, blocks as JSON text (api_call(data=...)): recorded decoded all the same.
    second = client.api_call("chat.postMessage",
                             data={"channel": "C0123OPS", "blocks": json.dumps(BLOCKS)})
    assert slack.calls("chat.postMessage")[1].args["blocks"] == BLOCKS
    assert float(second["ts"]) > float(first["ts"])

    updated = client.chat_update(channel="C0123OPS", ts=first["ts"], text="I04 beam back")
    assert updated["message"]["text"] == "I04 beam back"
    with pytest.raises(SlackApiError, match="message_not_found"):
        client.chat_update(channel="C0123OPS", ts="1.000000", text="never posted")
    with pytest.raises(SlackApiError, match="channel_not_found"):
        client.chat_postMessage(channel="#nowhere", text="x")


def test_answers_like_slack(slack: FakeSlack, client: WebClient):
    slack.users["U0123ADA"] = {"real_name": "Ada Lovelace", "name": "ada"}
    slack.usergroups["i04-oncall"] = ["U0123ADA", "U0456BOB"]

    assert client.auth_test()["user_id"] == "UBOT"
    assert client.users_info(user="U0123ADA")["user"]["real_name"] == "Ada Lovelace"
    dm = client.conversations_open(users=["U0123ADA"])["channel"]["id"]
    assert dm == slack.dm_channel("U0123ADA") and dm.startswith("D")
    assert client.chat_postMessage(channel="U0123ADA", text="page")["channel"] == dm
    groups = client.usergroups_list(include_users=True)["usergroups"]
    assert [(g["handle"], g["users"]) for g in groups] == [("i04-oncall", ["U0123ADA",
                                                                           "U0456BOB"])]
    members = client.usergroups_users_list(usergroup=groups[0]["id"])["users"]
    assert members == ["U0123ADA", "U0456BOB"]
    ts = client.chat_postMessage(channel="C0123OPS", text="x")["ts"]
    permalink = client.chat_getPermalink(channel="C0123OPS", message_ts=ts)["permalink"]
    assert permalink.endswith("/archives/C0123OPS/p" + ts.replace(".", ""))
    assert client.chat_postEphemeral(channel="C0123OPS", user="U0123ADA", text="x")["ok"]

    with pytest.raises(SlackApiError, match="unknown_method"):
        client.api_call("no.such.method")
    with pytest.raises(SlackApiError, match="not_authed"):
        WebClient(base_url=slack.url).auth_test()
    with pytest.raises(SlackApiError, match="not_allowed_token_type"):
        WebClient(token=APP_TOKEN, base_url=slack.url).auth_test()


def test_files_upload_v2_delivers_the_png(slack: FakeSlack, client: WebClient):
    ts = client.chat_postMessage(channel="C0123OPS", text="I04 temp high")["ts"]

    done = client.files_upload_v2(channel="C0123OPS", thread_ts=ts, content=PNG,
                                  filename="temp.png", title="I04 temp, last hour")

    asked = slack.wait_for_call("files.getUploadURLExternal")
    assert asked.args["filename"] == "temp.png" and int(asked.args["length"]) == len(PNG)
    complete = slack.wait_for_call("files.completeUploadExternal")
    assert (complete.args["channel_id"], complete.args["thread_ts"]) == ("C0123OPS", ts)
    [item] = complete.args["files"]
    assert item["title"] == "I04 temp, last hour"
    assert slack.uploads[item["id"]] == PNG and PNG.startswith(b"\x89PNG\r\n\x1a\n")
    assert done["file"]["id"] == item["id"]


def test_rate_limit_is_seen_and_retried(slack: FakeSlack, client: WebClient):
    slack.fail_next("chat.postMessage", retry_after=1)
    with pytest.raises(SlackApiError) as raised:  # no retry handler: the caller sees it
        client.chat_postMessage(channel="C0123OPS", text="x")
    assert raised.value.response.status_code == 429
    assert raised.value.response.headers["Retry-After"] == "1"

    client.retry_handlers.append(RateLimitErrorRetryHandler(max_retry_count=1))
    slack.fail_next("chat.postMessage", retry_after=1)
    start = time.monotonic()
    assert client.chat_postMessage(channel="C0123OPS", text="x")["ok"]
    assert time.monotonic() - start >= 1  # it waited Retry-After before trying again
    assert [c.status for c in slack.calls("chat.postMessage")] == [429, 429, 200]

    slack.fail_next("users.info", error="user_not_found", status=200)
    with pytest.raises(SlackApiError, match="user_not_found"):
        client.users_info(user="UBOT")


def test_response_url_records_what_is_posted(slack: FakeSlack):
    reply = WebhookClient(slack.response_url("status")).send(text="3 alarms",
                                                              response_type="ephemeral")
    assert (reply.status_code, reply.body) == (200, "ok")
    assert slack.wait_for_response("status") == {"text": "3 alarms",
                                                  "response_type": "ephemeral"}


async def socket_client(slack: FakeSlack, requests: list[SocketModeRequest],
                        messages: list[dict]) -> SocketModeClient:
    """An aiohttp SocketModeClient that records and acks every request.

    ping_interval also paces its reconnection (see test_socket_mode_reconnects): short
    here so that a reconnection takes a fraction of a second.
    """
    client = SocketModeClient(app_token=APP_TOKEN, web_client=AsyncWebClient(base_url=slack.url),
                              ping_interval=0.5)

    async def on_message(client, message: dict, raw: str | None) -> None:
        messages.append(message)

    async def on_request(client: SocketModeClient, request: SocketModeRequest) -> None:
        requests.append(request)
        await client.send_socket_mode_response(
            SocketModeResponse(envelope_id=request.envelope_id, payload={"text": "on it"}))

    client.message_listeners.append(on_message)
    client.socket_mode_request_listeners.append(on_request)
    return client


async def test_socket_mode_envelope_is_acked(slack: FakeSlack):
    requests: list[SocketModeRequest] = []
    messages: list[dict] = []
    client = await socket_client(slack, requests, messages)
    try:
        await client.connect()
        await slack.wait_connected_async(1, timeout=2)
        assert slack.calls("apps.connections.open")[0].token == APP_TOKEN

        command = {"command": "/beamwatch", "text": "status", "user_id": "U0123ADA",
                   "response_url": slack.response_url("cmd")}
        envelope_id = slack.push_envelope("slash_commands", command)

        ack = await slack.wait_for_ack_async(envelope_id, timeout=2)
        assert ack == {"envelope_id": envelope_id, "payload": {"text": "on it"}}
        assert [(r.type, r.payload, r.accepts_response_payload) for r in requests] == \
            [("slash_commands", command, True)]
        assert messages[0]["type"] == "hello"
    finally:
        await client.close()


async def test_socket_mode_reconnects(slack: FakeSlack):
    requests: list[SocketModeRequest] = []
    client = await socket_client(slack, requests, [])
    try:
        await client.connect()
        await slack.wait_connected_async(1, timeout=2)

        assert slack.drop_connections() == 1  # no close frame: the client must notice
        await slack.wait_connected_async(2, timeout=2)
        assert slack.connections_opened == 2

        slack.send_disconnect()  # Slack's warning before it retires a link
        await slack.wait_connected_async(3, timeout=2)
        assert slack.connections_opened == 3

        envelope_id = slack.push_envelope("events_api", {"event": {"type": "app_mention"}},
                                          retry_attempt=1, retry_reason="timeout",
                                          accepts_response_payload=False)
        await slack.wait_for_ack_async(envelope_id, timeout=2)
        assert (requests[0].retry_attempt, requests[0].retry_reason) == (1, "timeout")
    finally:
        await client.close()


async def test_refused_connections_are_retried(slack: FakeSlack):
    slack.refuse_connections(2)
    client = await socket_client(slack, [], [])
    try:
        await client.connect()  # retries on its own, every ping_interval, until it connects
        await slack.wait_connected_async(1, timeout=2)
        assert [c.status for c in slack.calls("apps.connections.open")] == [500, 500, 200]
    finally:
        await client.close()
