"""Slack through the Web API with a bot token (slack_sdk), so messages can be
updated in place.

- A message without `thread_ref`: chat.postMessage with blocks and a mrkdwn
  text fallback. The Delivery ref is "CHANNEL_ID:TS" of that message.
- A message with `thread_ref` (any kind but test/summary): chat.update of the
  original with the new state (acknowledged, resolved, still active...), then
  a reply in its thread (broadcast to the channel for repeat, escalation and
  a worse alarm). If the original is gone (message_not_found, edit window
  closed...), the update is skipped; if the thread is gone too, a new message
  is posted and its ref becomes the new anchor.

slack_sdk's AsyncWebClient needs aiohttp, which beamwatch does not depend on,
so the synchronous WebClient (urllib) runs in the notifier thread pool with
the channel timeout on its socket; its own retry handlers are off: retrying is
the outbox's job.
"""

from __future__ import annotations

import json
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError, SlackRequestError

from ..config.types import Secret
from ..model import Severity
from ._redact import register
from .base import (
    BaseNotifier,
    Delivery,
    DeliveryError,
    ErrorKind,
    Message,
    http_failure,
    parse_retry_after,
    run_blocking,
)
from .render import Renderer

DEFAULT_API_URL = "https://slack.com/api/"

# Slack "error" codes (https://api.slack.com/methods/chat.postMessage#errors).
RETRY_ERRORS = frozenset({
    "internal_error", "fatal_error", "service_unavailable", "request_timeout",
    "team_added_to_org", "ratelimited", "rate_limited",
})
AUTH_ERRORS = frozenset({
    "invalid_auth", "not_authed", "account_inactive", "token_revoked", "token_expired",
    "no_permission", "missing_scope", "not_allowed_token_type", "ekm_access_denied",
    "org_login_required", "two_factor_setup_required", "access_denied",
})
# The original message cannot be updated: reply (or post anew) instead.
GONE_ERRORS = frozenset({
    "message_not_found", "cant_update_message", "edit_window_closed", "thread_not_found",
    "is_archived", "channel_not_found",
})
THREADED_KINDS = frozenset({"alarm", "ack", "resolve", "repeat", "escalation"})
# the buttons the bot (beamwatch.slack) answers: action_id -> label; value {"check", "incident"}
ACTIONS = {"bw_ack": "Acknowledge", "bw_silence_1h": "Silence 1h", "bw_silence_4h": "Silence 4h",
           "bw_history": "History"}
ACTIVE_KINDS = frozenset({"alarm", "repeat", "escalation"})  # still to be acted on
BROADCAST_KINDS = frozenset({"repeat", "escalation"})


def parse_ref(ref: str) -> tuple[str, str] | None:
    """'C0123ABC:1712345678.000100' -> (channel, ts)."""
    channel, sep, ts = ref.rpartition(":")
    return (channel, ts) if sep and channel and ts else None


class SlackNotifier(BaseNotifier):
    kind = "slack"

    def __init__(
        self,
        name: str,
        token: str | Secret,
        channel: str,
        *,
        renderer: Renderer,
        api_url: str | None = None,
        timeout: float = 10.0,
    ):
        register(token)
        super().__init__(name, f"Slack {channel}", timeout)
        self.channel = channel
        self.renderer = renderer
        self.buttons = False  # set when the Slack bot runs to answer them (registry.py)
        self.api_url = api_url or DEFAULT_API_URL
        self.client = WebClient(
            token=token.get() if isinstance(token, Secret) else token,
            base_url=self.api_url,
            timeout=timeout,  # type: ignore[arg-type]  # urllib takes a float
            retry_handlers=[],
        )

    abandoned_steps = 2  # the Web API call in flight: connect, then read

    @property
    def deadline(self) -> float:
        return self.timeout * 3 + 1  # update + reply (+ a fresh post) in the worst case

    async def _call(self, method: str, **kwargs: Any) -> dict[str, Any]:
        fn = getattr(self.client, method)
        try:
            response = await run_blocking(fn, timeout=self.timeout + 1, **kwargs)
        except SlackApiError as e:
            raise slack_failure(e, f"{self.destination} {method.replace('_', '.')}") from None
        except SlackRequestError as e:
            raise DeliveryError(ErrorKind.CONFIG, f"{self.destination}: {e}") from None
        except SlackClientError as e:
            raise DeliveryError(ErrorKind.REJECTED, f"{self.destination}: {e}") from None
        return response.data if isinstance(response.data, dict) else {}

    async def _deliver(self, message: Message) -> Delivery:
        text = self.renderer.render("mrkdwn", message)
        anchor = parse_ref(message.thread_ref) if message.thread_ref else None
        if anchor is None or message.kind not in THREADED_KINDS:
            return await self._post_new(message, text)
        channel, ts = anchor
        notes = []
        try:
            await self._call(
                "chat_update", channel=channel, ts=ts, text=text, blocks=self._blocks(message),
            )
            notes.append(f"updated {ts}")
        except DeliveryError as e:
            if e.code not in GONE_ERRORS:
                raise
            notes.append(f"original not updated ({e.code})")
        broadcast = message.kind in BROADCAST_KINDS or (
            message.kind == "alarm" and message.previous_severity is not None
            and message.severity > message.previous_severity > Severity.OK
        )
        try:
            reply = await self._call(
                "chat_postMessage", channel=channel, thread_ts=ts, text=text,
                reply_broadcast=broadcast, unfurl_links=False, unfurl_media=False,
            )
        except DeliveryError as e:
            if e.code not in GONE_ERRORS:
                raise
            fresh = await self._post_new(message, text)
            return Delivery.sent(
                ref=fresh.ref, detail=f"thread {ts} is gone ({e.code}); {fresh.detail}"
            )
        notes.append(f"replied in thread ts={reply.get('ts')}")
        detail = f"{self.destination}: " + ", ".join(notes)
        return Delivery.sent(ref=message.thread_ref, detail=detail)

    async def _post_new(self, message: Message, text: str) -> Delivery:
        data = await self._call(
            "chat_postMessage", channel=self.channel, text=text,
            blocks=self._blocks(message), unfurl_links=False, unfurl_media=False,
        )
        channel, ts = data.get("channel") or self.channel, data.get("ts")
        return Delivery.sent(
            ref=f"{channel}:{ts}" if ts else None,
            detail=f"{self.destination}: posted ts={ts} in {channel}",
        )


    def _blocks(self, message: Message) -> list[dict[str, Any]]:
        blocks = self.renderer.blocks(message)
        # a grouped message ("3 alarms on I04") gets none: a button acts on one check
        if self.buttons and len(message.check_ids) == 1 and message.kind in THREADED_KINDS:
            blocks.append(actions_block(message))
        return blocks


def actions_block(message: Message) -> dict[str, Any]:
    """Acknowledge and Silence while the alarm is to be acted on; History always. The
    original message is updated with each state, so an acked alarm loses its buttons."""
    value = json.dumps({"check": message.check_ids[0], "incident": message.incident_id})
    names = list(ACTIONS) if message.kind in ACTIVE_KINDS else ["bw_history"]
    buttons = []
    for action_id in names:
        button = {"type": "button", "action_id": action_id, "value": value,
                  "text": {"type": "plain_text", "text": ACTIONS[action_id]}}
        if action_id == "bw_ack":
            button["style"] = "primary"
        buttons.append(button)
    return {"type": "actions", "block_id": "beamwatch", "elements": buttons}


def slack_failure(e: SlackApiError, where: str) -> DeliveryError:
    """Classify a Slack Web API error by HTTP status, then by its `error` code."""
    response = e.response
    status = response.status_code
    data = response.data if isinstance(response.data, dict) else {}
    code = str(data.get("error") or "")
    headers = {k.lower(): v for k, v in (response.headers or {}).items()}
    retry_after = headers.get("retry-after")
    if isinstance(retry_after, list):
        retry_after = retry_after[0] if retry_after else None
    err: DeliveryError | None
    if status == 429 or code in ("ratelimited", "rate_limited"):
        after = parse_retry_after(retry_after)
        err = DeliveryError(
            ErrorKind.RATE_LIMITED,
            f"{where}: rate limited by Slack" + (f" (retry after {after:g}s)" if after else ""),
            status=status, retry_after=after,
        )
    elif status != 200 and not code.replace("_", "").isalnum():
        err = http_failure(status, where, "", retry_after) or DeliveryError(
            ErrorKind.REJECTED, f"{where}: HTTP {status}", status=status)
    elif status >= 500 or code in RETRY_ERRORS:
        err = DeliveryError(ErrorKind.SERVER, f"{where}: {code or f'HTTP {status}'}",
                            status=status)
    elif code in AUTH_ERRORS:
        err = DeliveryError(ErrorKind.AUTH, f"{where}: {code} (check the bot token and scopes)",
                            status=status)
    else:
        hint = {
            "channel_not_found": " (check the channel, and invite the bot to it)",
            "not_in_channel": " (invite the bot to the channel)",
            "user_not_found": " (use the member ID, like U0123ABC)",
        }.get(code, "")
        err = DeliveryError(ErrorKind.REJECTED, f"{where}: {code or f'HTTP {status}'}{hint}",
                            status=status)
    err.code = code or None
    return err
