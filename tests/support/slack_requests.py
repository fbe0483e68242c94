"""Requests as Slack sends them to an app in HTTP mode: form-encoded slash commands and
button presses, JSON events, each signed with the app's signing secret
(https://api.slack.com/authentication/verifying-requests-from-slack)."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from urllib.parse import urlencode

TEAM = {"id": "T0FAKE", "domain": "beamwatch-test"}


def signed(secret: str, body: str, at: float | None = None,
           content_type: str = "application/x-www-form-urlencoded") -> dict[str, str]:
    """The headers Slack sends with `body`: X-Slack-Request-Timestamp and -Signature."""
    stamp = str(int(time.time() if at is None else at))
    digest = hmac.new(secret.encode(), f"v0:{stamp}:{body}".encode(), hashlib.sha256)
    return {"X-Slack-Request-Timestamp": stamp, "X-Slack-Signature": "v0=" + digest.hexdigest(),
            "Content-Type": content_type}


def slash(text: str, user: str, response_url: str, *, command: str = "/beamwatch",
          channel: str = "C0ALARMS", user_name: str | None = None) -> str:
    return urlencode({
        "token": "legacy", "team_id": TEAM["id"], "team_domain": TEAM["domain"],
        "channel_id": channel, "channel_name": "i04-alarms", "user_id": user,
        "user_name": user_name or user.lower(), "command": command, "text": text,
        "api_app_id": "A0FAKEAPP", "response_url": response_url,
        "trigger_id": f"{uuid.uuid4().int % 10**12}.1.abc"})


def button(action_id: str, value: str, user: str, channel: str, ts: str, response_url: str,
           user_name: str | None = None) -> str:
    payload = {
        "type": "block_actions", "api_app_id": "A0FAKEAPP", "token": "legacy", "team": TEAM,
        "user": {"id": user, "username": user_name or user.lower(), "team_id": TEAM["id"]},
        "container": {"type": "message", "message_ts": ts, "channel_id": channel},
        "channel": {"id": channel, "name": "i04-alarms"},
        "message": {"type": "message", "ts": ts, "text": "alarm"},
        "trigger_id": f"{uuid.uuid4().int % 10**12}.1.abc", "response_url": response_url,
        "actions": [{"type": "button", "action_id": action_id, "block_id": "beamwatch",
                     "value": value, "action_ts": f"{time.time():.6f}"}],
    }
    return urlencode({"payload": json.dumps(payload)})


def event(inner: dict, event_id: str | None = None) -> str:
    return json.dumps({
        "token": "legacy", "team_id": TEAM["id"], "api_app_id": "A0FAKEAPP",
        "type": "event_callback", "event_id": event_id or f"Ev{uuid.uuid4().hex[:10].upper()}",
        "event_time": int(time.time()), "event": inner,
        "authorizations": [{"team_id": TEAM["id"], "user_id": "UBOT", "is_bot": True}]})


def dm(text: str, user: str, channel: str = "D0ANA") -> dict:
    return {"type": "message", "channel_type": "im", "channel": channel, "user": user,
            "text": text, "ts": f"{time.time():.6f}", "event_ts": f"{time.time():.6f}"}


def mention(text: str, user: str, channel: str = "C0ALARMS") -> dict:
    ts = f"{time.time():.6f}"
    return {"type": "app_mention", "channel": channel, "user": user,
            "text": f"<@UBOT> {text}", "ts": ts, "event_ts": ts}
