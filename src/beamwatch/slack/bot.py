"""The Slack bot: slack_bolt's AsyncApp inside `beamwatch run`, in the engine's loop.

Where requests come from (`slack.mode`):
- socket (default): a WebSocket that beamwatch opens to Slack (Socket Mode);
  no public URL needed. We supervise the connection ourselves: a lost or
  stale socket is reopened with exponential backoff (1 s … 60 s, jittered),
  where the SDK alone would retry every 10 s for ever, logging an error each
  time.
- http: Slack POSTs slash commands, events and button presses to
  `/slack/events` on the one web app (`web/server.py` mounts `http_handler`);
  bolt checks the signature and the timestamp (a bad or old one: 401, nothing
  done).

What it answers:
- `/beamwatch …`, direct messages and mentions: `commands.py`, one grammar;
- the buttons on every Slack alert (`notify/slack.py` adds them): Acknowledge,
  Silence 1 h / 4 h, History.

Slack wants an answer within 3 seconds: every listener acks at once and does
the work after (service calls run in a thread). Retried deliveries (same
event id) are dropped. Web API calls honour 429 Retry-After (slack_sdk's
retry handler) and time out; nothing here is awaited by the engine or the
outbox, so a Slack outage costs the bot, not the alerting.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient

from ..config.schema import Config
from ..notify._redact import install, register
from ..notify.slack import DEFAULT_API_URL
from ..store import Store
from . import grammar
from .commands import Caller, Commands, Live, ReadNow, Recent, Resolver
from .grammar import Request
from .replies import Reply, error
from .roles import Roles, person_of

log = logging.getLogger("beamwatch.slack")

TIMEOUT = 10.0  # seconds for one Web API call
BACKOFF_FIRST, BACKOFF_MAX = 1.0, 60.0
WATCH_EVERY = 2.0  # seconds between looks at the socket
CONNECT_TIMEOUT = 20.0  # seconds one connection attempt may take
SEEN_MAX = 10_000  # event ids remembered, to drop Slack's retries
SILENCE_BUTTONS = {"silence_1h": "1h", "silence_4h": "4h"}
LOGGERS = ("beamwatch.slack", "beamwatch.slack.bolt", "beamwatch.slack.socket", "slack_bolt",
           "slack_sdk.socket_mode", "aiohttp.client")


class Dedup:
    """Event ids seen recently: Slack retries a delivery it thinks was lost (HTTP after
    3 s, Socket Mode after a reconnect) with the same event id."""

    def __init__(self, size: int = SEEN_MAX):
        self.size = size
        self._seen: OrderedDict[str, None] = OrderedDict()

    def first_time(self, key: str | None) -> bool:
        if not key:
            return True
        if key in self._seen:
            return False
        self._seen[key] = None
        if len(self._seen) > self.size:
            self._seen.popitem(last=False)
        return True


def backoff(attempt: int) -> float:
    """1, 2, 4, … 60 s, each ±20 %, so many instances do not reconnect in step."""
    return min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** attempt) * random.uniform(0.8, 1.2)


class SlackBot:
    def __init__(self, config: Callable[[], Config], store: Store, read_now: ReadNow,
                 clock: Callable[[], float] = time.time, recent: Recent = lambda _: [],
                 resolver: Resolver = lambda: None, live: Live | None = None):
        self.config = config
        cfg = config().slack
        assert cfg is not None
        self.settings = cfg
        register(cfg.bot_token, cfg.app_token, cfg.signing_secret)  # never in a log line
        install(LOGGERS)
        self.store = store
        self.clock = clock
        self.client = AsyncWebClient(
            token=cfg.bot_token.get(), base_url=cfg.api_url or DEFAULT_API_URL,
            timeout=int(TIMEOUT),
            retry_handlers=[AsyncRateLimitErrorRetryHandler(max_retry_count=3),
                            AsyncConnectionErrorRetryHandler(max_retry_count=2)])
        self.commands = Commands(config, store, read_now, clock, recent, resolver, live)
        self.roles = Roles(self._group_members, clock)
        self.dedup = Dedup()
        self._names: dict[str, str] = {}
        self.app = AsyncApp(client=self.client, signing_secret=(
            cfg.signing_secret.get() if cfg.signing_secret else None),
            request_verification_enabled=cfg.mode == "http",
            process_before_response=False, logger=logging.getLogger("beamwatch.slack.bolt"))
        self._register()
        self.connected = asyncio.Event()

    # --- wiring -------------------------------------------------------------------------

    def _register(self) -> None:
        app = self.app
        app.middleware(self._drop_retries)
        app.command(self.settings.command)(self._on_command)
        app.event("app_mention")(self._on_mention)
        app.event("message")(self._on_message)
        app.action("bw_ack")(self._on_button)
        for action in ("bw_silence_1h", "bw_silence_4h", "bw_history"):
            app.action(action)(self._on_button)
        app.error(self._on_error)

    async def _drop_retries(self, body: dict, next: Callable) -> Any:  # noqa: A002 - bolt's name
        if not self.dedup.first_time(body.get("event_id")):
            log.info("slack: dropped a retried delivery of event %s", body.get("event_id"))
            from slack_bolt.response import BoltResponse

            return BoltResponse(status=200, body="")
        return await next()

    async def _on_error(self, error: Exception, body: dict) -> None:
        log.error("slack: a request failed: %s: %s", type(error).__name__, error)

    # --- who is asking ----------------------------------------------------------------

    async def caller(self, user_id: str, name: str | None = None) -> Caller:
        cfg = self.config()
        if name:
            self._names[user_id] = name
        return Caller(user_id, name or await self._name(user_id), person_of(cfg, user_id),
                      await self.roles.role_of(cfg, user_id))

    async def _name(self, user_id: str) -> str:
        if user_id not in self._names:
            try:
                info = await self.client.users_info(user=user_id)
                user = info.get("user") or {}
                self._names[user_id] = user.get("name") or user.get("real_name") or user_id
            except Exception as e:  # Slack away: the id is a name too
                log.info("slack: users.info %s failed: %s", user_id, e)
                return user_id
        return self._names[user_id]

    async def _group_members(self, handle: str) -> set[str]:
        groups = (await self.client.usergroups_list()).get("usergroups") or []
        ids = [g["id"] for g in groups if g.get("handle") == handle]
        if not ids:
            return set()
        users = await self.client.usergroups_users_list(usergroup=ids[0])
        return set(users.get("users") or [])

    # --- commands: slash, DM, mention ---------------------------------------------------

    async def answer(self, text: str, caller: Caller) -> Reply:
        try:
            request = grammar.parse(text)
        except grammar.Malformed as e:
            return error(e.message, grammar.help_text(e.verb) if e.verb
                         else "say `help` for the commands")
        try:
            return await self.commands.run(request, caller)
        except Exception as e:  # a bug must cost one answer, not the bot
            log.exception("slack: %s failed", request.verb)
            return error(f"`{request.verb}` failed inside beamwatch ({type(e).__name__}); "
                         "it is logged")

    async def _on_command(self, ack: Callable, body: dict, respond: Callable) -> None:
        await ack()  # within Slack's 3 s; the answer follows through response_url
        caller = await self.caller(body.get("user_id", ""), body.get("user_name"))
        reply = await self.answer(body.get("text", ""), caller)
        await respond(text=reply.text, blocks=reply.blocks,
                      response_type="in_channel" if reply.public else "ephemeral")
        if reply.png:  # an answer for the asker alone: the plot goes to their DM with the bot
            await self._upload(reply, await self._dm(body.get("user_id", "")), None)

    async def _on_mention(self, event: dict, say: Callable) -> None:
        thread = event.get("thread_ts") or event.get("ts")
        await self._converse(event, say, thread)

    async def _on_message(self, event: dict, say: Callable) -> None:
        if event.get("channel_type") != "im" or event.get("subtype") or event.get("bot_id"):
            return  # only people's direct messages; channel chatter is not for us
        await self._converse(event, say, event.get("thread_ts"))

    async def _converse(self, event: dict, say: Callable, thread: str | None) -> None:
        caller = await self.caller(event.get("user", ""))
        reply = await self.answer(event.get("text", ""), caller)
        channel = event.get("channel")
        if event.get("channel_type") == "im" or reply.public:
            await say(text=reply.text, blocks=reply.blocks, thread_ts=thread)
            if reply.png:
                await self._upload(reply, channel, thread)
            return
        # a question asked in a channel: the answer is for the asker alone
        await self.client.chat_postEphemeral(channel=channel, user=caller.user_id,
                                             text=reply.text, blocks=reply.blocks,
                                             thread_ts=thread)
        if reply.png:
            await self._upload(reply, await self._dm(caller.user_id), None)

    async def _dm(self, user_id: str) -> str | None:
        try:
            opened = await self.client.conversations_open(users=user_id)
        except Exception as e:
            log.info("slack: cannot open a DM with %s: %s", user_id, e)
            return None
        return (opened.get("channel") or {}).get("id")

    async def _upload(self, reply: Reply, channel: str | None, thread: str | None) -> None:
        if not channel:
            return
        try:
            await self.client.files_upload_v2(channel=channel, thread_ts=thread,
                                              file=reply.png, filename=reply.png_name,
                                              title=reply.png_name.removesuffix(".png"))
        except Exception as e:  # the text answer is out already
            log.warning("slack: plot upload to %s failed: %s", channel, e)

    # --- buttons on alerts --------------------------------------------------------------

    async def _on_button(self, ack: Callable, body: dict, action: dict,
                         respond: Callable) -> None:
        await ack()
        try:
            await self._press(body, action, respond)
        except Exception as e:  # a bug or Slack itself: the presser is told, the bot goes on
            log.exception("slack: button %s failed", action.get("action_id"))
            await respond(text=f":warning: that failed inside beamwatch ({type(e).__name__}); "
                               "it is logged", response_type="ephemeral",
                          replace_original=False)

    async def _press(self, body: dict, action: dict, respond: Callable) -> None:
        user = body.get("user") or {}
        caller = await self.caller(user.get("id", ""), user.get("username") or user.get("name"))
        try:
            value = json.loads(action.get("value") or "{}")
        except json.JSONDecodeError:
            value = {}
        if not isinstance(value, dict):
            value = {}
        check = str(value.get("check") or "")
        name = action.get("action_id", "").removeprefix("bw_")
        if name == "ack":
            request = Request("ack", {"target": check})
        elif name in SILENCE_BUTTONS:
            request = Request("silence", {
                "matchers": [f"check={check}"], "duration": SILENCE_BUTTONS[name],
                "reason": f"from the alert in Slack, by {caller.actor}"})
        else:
            request = Request("history", {"check": check, "since": 86400.0})
        reply = await self.commands.run(request, caller)
        channel = (body.get("channel") or {}).get("id")
        thread = (body.get("message") or {}).get("ts")
        if reply.ok and reply.public and name != "ack":
            # the thread sees who silenced it; an ack is announced by the engine itself
            await self._post(channel, thread, reply)
        elif reply.ok and name == "history":
            await self._post(channel, thread, reply)  # the alert's thread: for everyone told
            if reply.png:
                await self._upload(reply, channel, thread)
        else:  # to the presser only: done, or why not
            await respond(text=reply.text, blocks=reply.blocks, response_type="ephemeral",
                          replace_original=False)

    async def _post(self, channel: str | None, thread: str | None, reply: Reply) -> None:
        if channel:
            await self.client.chat_postMessage(channel=channel, thread_ts=thread,
                                               text=reply.text, blocks=reply.blocks)

    # --- running ------------------------------------------------------------------------

    def http_handler(self):
        """For HTTP mode: the starlette handler `web/server.py` mounts at /slack/events."""
        from slack_bolt.adapter.starlette.async_handler import AsyncSlackRequestHandler

        return AsyncSlackRequestHandler(self.app)

    async def serve(self, stop: asyncio.Event) -> None:
        """Socket Mode: keep a connection open until `stop`; HTTP mode: nothing to run."""
        if self.settings.mode != "socket":
            return
        from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler

        assert self.settings.app_token is not None
        sdk_log = logging.getLogger("beamwatch.slack.socket")
        sdk_log.setLevel(logging.CRITICAL)  # it logs every failed retry; we log once, below
        handler = AsyncSocketModeHandler(self.app, self.settings.app_token.get(),
                                         logger=sdk_log)
        # reconnecting is ours, with backoff (_keep_connected); connect() sets the first from
        # the second after each connection
        handler.client.auto_reconnect_enabled = False
        handler.client.default_auto_reconnect_enabled = False
        watcher = asyncio.ensure_future(self._keep_connected(handler.client))
        try:
            await stop.wait()
        finally:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
            await handler.close_async()

    async def _keep_connected(self, client) -> None:
        attempt = 0
        while True:
            if await client.is_connected():
                self.connected.set()
                await asyncio.sleep(WATCH_EVERY)
                continue
            self.connected.clear()
            try:
                # the SDK's connect() retries a WebSocket that cannot be opened for ever,
                # at a fixed pace: a hung attempt is a failed one here, and backs off
                async with asyncio.timeout(CONNECT_TIMEOUT):
                    await client.connect_to_new_endpoint(force=True)
                if not await client.is_connected():
                    raise ConnectionError("connected, then lost at once")
            except Exception as e:
                delay = backoff(attempt)
                (log.warning if attempt == 0 else log.info)(
                    "slack: cannot open the Socket Mode connection (%s); again in %.0fs",
                    _short(e), delay)
                attempt += 1
                await asyncio.sleep(delay)
                continue
            if attempt:
                log.warning("slack: Socket Mode connected again after %d attempts", attempt)
            else:
                log.info("slack: Socket Mode connected")
            attempt = 0
            self.connected.set()


def _short(e: Exception) -> str:
    text = str(e).splitlines()[0] if str(e) else type(e).__name__
    return text[:200]

