"""A real, local Slack for tests: the Web API, file uploads, response_url and Socket Mode,
served by aiohttp on 127.0.0.1.

Why a background thread with its own event loop: sync tests, async tests (whose own loop
runs the client under test) and a `beamwatch run` subprocess can all use the same server,
and the fake never needs the test's loop to make progress.

    with FakeSlack() as slack:
        slack.channels["i04-ops"] = "C0123OPS"          # "#i04-ops" -> C0123OPS
        client = WebClient(token="xoxb-1", base_url=slack.url)
        client.chat_postMessage(channel="#i04-ops", text="beam lost")
        call = slack.wait_for_call("chat.postMessage")  # call.args, call.token, call.response

Socket Mode: `apps.connections.open` (with an xapp- token) hands out ws://.../link; each
accepted socket gets Slack's "hello"; `push_envelope()` sends an envelope on the newest
socket and `wait_for_ack()` returns what the client acked.

In an async test whose loop runs the Slack client, use the `*_async` waits: a blocking
wait would stop the very loop that has to connect or ack.

Like Slack, the fake refuses what Slack refuses (no token, an xapp- token for a bot
method, a channel name it does not know, chat.update of a message it never posted), so
a test fails where production would.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import itertools
import json
import re
import threading
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

from aiohttp import WSMsgType, web

T = TypeVar("T")

LOOPBACK = "127.0.0.1"
TEAM_ID = "T0FAKE"
TEAM_DOMAIN = "beamwatch-test"
APP_ID = "A0FAKEAPP"
BOT_USER = "UBOT"
BOT_ID = "B0FAKEBOT"
FIRST_TS_US = 1_790_000_000_000_100  # the first message ts, "1790000000.000100", in µs

# Arguments that travel as JSON text when a call is form-encoded (slack_sdk does this for
# files.completeUploadExternal, callers of api_call(data=...) for blocks).
JSON_FIELDS = frozenset({"blocks", "attachments", "files", "view", "metadata", "unfurls",
                         "outputs", "user_auth_blocks"})
# The methods that take the app-level token (xapp-); all others refuse it.
APP_TOKEN_METHODS = frozenset({"apps.connections.open", "apps.event.authorizations.list"})
CONVERSATION_ID = re.compile(r"[CGDUW][A-Z0-9]{2,}")


@dataclass
class Call:
    """One Web API call as the fake saw it, and what it answered."""

    method: str
    args: dict[str, Any]
    token: str | None
    status: int  # the HTTP status answered: 429 for an injected rate limit
    response: dict[str, Any]

    @property
    def ok(self) -> bool:
        return self.status == 200 and bool(self.response.get("ok"))


@dataclass
class _Failure:
    error: str
    status: int
    retry_after: int | None


@dataclass
class _Socket:
    ws: web.WebSocketResponse
    transport: asyncio.BaseTransport | None  # kept to abort it: a drop without a close frame


class SlackError(Exception):
    """Answered as {"ok": false, "error": str(e)} with HTTP 200, as Slack does."""


def _truthy(value: Any) -> bool:
    return value in (True, 1, "1", "true", "True")


def _short_id(prefix: str, key: str) -> str:
    """A stable Slack-looking id (the same key gives the same id in every run)."""
    return prefix + hashlib.sha1(key.encode()).hexdigest()[:10].upper()


class FakeSlack:
    def __init__(self) -> None:
        # What a test may set before (or while) the client runs.
        self.channels: dict[str, str] = {}  # channel name (without "#") -> id
        self.users: dict[str, dict[str, Any]] = {}  # user id -> {"real_name", "name", ...}
        self.usergroups: dict[str, list[str]] = {}  # handle -> user ids

        # Everything below is shared with the server thread: only under _cond.
        self._cond = threading.Condition()
        self._calls: list[Call] = []
        self._failures: dict[str, collections.deque[_Failure]] = collections.defaultdict(
            collections.deque)
        self._ts = itertools.count(FIRST_TS_US, 100)
        self._messages: dict[tuple[str, str], dict[str, Any]] = {}  # (channel, ts) -> message
        self._files: dict[str, dict[str, Any]] = {}  # file id -> {"filename", "data", ...}
        self._file_ids = itertools.count(1)
        self._responses: dict[str, list[Any]] = collections.defaultdict(list)
        self._sockets: list[_Socket] = []
        self._accepted = 0
        self._acks: dict[str, dict[str, Any]] = {}

        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self.port = 0
        self._methods: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
            "auth.test": self._auth_test,
            "chat.postMessage": self._post_message,
            "chat.update": self._update,
            "chat.postEphemeral": self._post_ephemeral,
            "chat.getPermalink": self._permalink,
            "conversations.open": self._open_conversation,
            "users.info": self._user_info,
            "usergroups.list": self._usergroups_list,
            "usergroups.users.list": self._usergroup_users,
            "files.getUploadURLExternal": self._upload_url,
            "files.completeUploadExternal": self._complete_upload,
            "apps.connections.open": self._connections_open,
        }

    # --- lifecycle ------------------------------------------------------------------

    def start(self) -> FakeSlack:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fake-slack",
                                        daemon=True)
        self._thread.start()
        self._run(self._serve())
        return self

    def stop(self) -> None:
        if self._loop is None:
            return
        self._run(self._shutdown())
        self._loop.call_soon_threadsafe(self._loop.stop)
        assert self._thread is not None
        self._thread.join(timeout=5)
        self._loop.close()
        self._loop = None

    def __enter__(self) -> FakeSlack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """The Web API base URL: slack_sdk's `base_url`."""
        return f"http://{LOOPBACK}:{self.port}/api/"

    def _run(self, coro: Coroutine[Any, Any, T], timeout: float = 10) -> T:
        """Run coro on the server's loop and wait for it (from any other thread)."""
        assert self._loop is not None, "FakeSlack is not started"
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    async def _serve(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/api/{method}", self._api)
        app.router.add_post("/upload/v1/{file_id}", self._upload)
        app.router.add_post("/response/{name}", self._response)
        app.router.add_get("/link", self._link)
        app.router.add_get("/link/", self._link)
        # A short shutdown_timeout: stop() must not wait a minute for a hung client.
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        await web.TCPSite(self._runner, LOOPBACK, 0).start()  # port 0: no race for a port
        self.port = self._runner.addresses[0][1]

    async def _shutdown(self) -> None:
        self._abort_sockets()
        assert self._runner is not None
        await self._runner.cleanup()

    # --- the record -----------------------------------------------------------------

    def calls(self, method: str | None = None) -> list[Call]:
        """Every Web API call so far (injected failures included), oldest first."""
        with self._cond:
            return [c for c in self._calls if method is None or c.method == method]

    def wait_for_call(self, method: str, predicate: Callable[[Call], bool] | None = None,
                      timeout: float = 10) -> Call:
        """The first call of `method` (matching predicate), waiting for it if need be."""
        return self._wait(lambda: [c for c in self._calls if c.method == method
                                   and (predicate is None or predicate(c))],
                          timeout, f"a {method} call")

    async def wait_for_call_async(self, method: str,
                                  predicate: Callable[[Call], bool] | None = None,
                                  timeout: float = 10) -> Call:
        return await asyncio.to_thread(self.wait_for_call, method, predicate, timeout)

    @property
    def uploads(self) -> dict[str, bytes]:
        """file id -> the bytes POSTed to its upload URL."""
        with self._cond:
            return {fid: f["data"] for fid, f in self._files.items() if f["data"] is not None}

    def fail_next(self, method: str, error: str = "ratelimited", status: int = 429,
                  retry_after: int | None = 1, times: int = 1) -> None:
        """The next `times` calls of method answer {"ok": false, "error": error} with HTTP
        `status` (and Retry-After: retry_after when the status is 429)."""
        with self._cond:
            self._failures[method].extend([_Failure(error, status, retry_after)] * times)

    def _wait(self, found: Callable[[], list[T]], timeout: float, what: str) -> T:
        # Condition.wait_for re-checks on every notify: no polling, no sleep.
        with self._cond:
            hits = self._cond.wait_for(found, timeout)
        if not hits:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        return hits[0]

    # --- the Web API ----------------------------------------------------------------

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        args = await _parse_args(request)
        bearer = request.headers.get("Authorization", "")
        token = bearer[len("Bearer "):] if bearer.startswith("Bearer ") else None
        token = token or args.pop("token", None)
        args.pop("token", None)
        status, headers = 200, {}
        with self._cond:
            failures = self._failures.get(method)
            if failures:
                failure = failures.popleft()
                status, body = failure.status, {"ok": False, "error": failure.error}
                if status == 429 and failure.retry_after is not None:
                    headers["Retry-After"] = str(failure.retry_after)
            else:
                try:
                    body = {"ok": True, **self._answer(method, args, token)}
                except SlackError as e:
                    body = {"ok": False, "error": str(e)}
                    if str(e) == "unknown_method":
                        body["req_method"] = method
            self._calls.append(Call(method, args, token, status, body))
            self._cond.notify_all()
        return web.json_response(body, status=status, headers=headers)

    def _answer(self, method: str, args: dict[str, Any], token: str | None) -> dict[str, Any]:
        answer = self._methods.get(method)
        if answer is None:
            raise SlackError("unknown_method")
        if not token:
            raise SlackError("not_authed")
        if token.startswith("xapp-") != (method in APP_TOKEN_METHODS):
            raise SlackError("not_allowed_token_type")
        return answer(args)

    def _next_ts(self) -> str:
        us = next(self._ts)
        return f"{us // 1_000_000}.{us % 1_000_000:06d}"

    def dm_channel(self, user: str) -> str:
        """The DM channel id of a user (what conversations.open answers)."""
        return "D" + user[1:]

    def usergroup_id(self, handle: str) -> str:
        """The id ("S...") usergroups.list gives the group with this handle."""
        return _short_id("S", handle)

    def _channel_id(self, channel: Any, *, users_ok: bool = True) -> str:
        """A channel id from what a caller passed: an id, a user id (posting to a user
        goes to their DM) or a name known in self.channels."""
        channel = str(channel or "")
        name = channel.removeprefix("#")
        if name in self.channels:
            return self.channels[name]
        if channel.startswith("#") or not CONVERSATION_ID.fullmatch(channel):
            raise SlackError("channel_not_found")
        if channel[0] in "UW":
            if not users_ok:
                raise SlackError("channel_not_found")
            return self.dm_channel(channel)
        return channel

    def _message(self, channel: str, ts: Any) -> dict[str, Any]:
        message = self._messages.get((channel, str(ts or "")))
        if message is None:
            raise SlackError("message_not_found")
        return message

    def _auth_test(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"url": f"https://{TEAM_DOMAIN}.slack.com/", "team": "Beamwatch Test",
                "user": "beamwatch", "team_id": TEAM_ID, "user_id": BOT_USER, "bot_id": BOT_ID,
                "is_enterprise_install": False}

    def _post_message(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel_id(args.get("channel"))
        if not any(args.get(k) for k in ("text", "blocks", "attachments")):
            raise SlackError("no_text")
        ts = self._next_ts()
        message = {"type": "message", "user": BOT_USER, "bot_id": BOT_ID, "app_id": APP_ID,
                   "team": TEAM_ID, "text": args.get("text", ""), "ts": ts}
        message.update({k: args[k] for k in ("blocks", "attachments", "thread_ts", "metadata")
                        if k in args})
        self._messages[(channel, ts)] = message
        return {"channel": channel, "ts": ts, "message": message}

    def _update(self, args: dict[str, Any]) -> dict[str, Any]:
        # A user id is not enough here (Slack wants the DM's id), unlike chat.postMessage.
        channel = self._channel_id(args.get("channel"), users_ok=False)
        message = self._message(channel, args.get("ts"))
        message.update({k: args[k] for k in ("text", "blocks", "attachments") if k in args})
        message["edited"] = {"user": BOT_USER, "ts": self._next_ts()}
        return {"channel": channel, "ts": message["ts"], "text": message["text"],
                "message": message}

    def _post_ephemeral(self, args: dict[str, Any]) -> dict[str, Any]:
        self._channel_id(args.get("channel"))
        if not args.get("user"):
            raise SlackError("user_not_in_channel")
        if not any(args.get(k) for k in ("text", "blocks", "attachments")):
            raise SlackError("no_text")
        return {"message_ts": self._next_ts()}

    def _permalink(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel_id(args.get("channel"), users_ok=False)
        ts = self._message(channel, args.get("message_ts"))["ts"]
        return {"channel": channel,
                "permalink": f"https://{TEAM_DOMAIN}.slack.com/archives/{channel}/p"
                             + ts.replace(".", "")}

    def _open_conversation(self, args: dict[str, Any]) -> dict[str, Any]:
        users = args.get("users") or []
        if isinstance(users, str):
            users = [u for u in users.split(",") if u]
        if args.get("channel"):
            channel = str(args["channel"])
        elif not users:
            raise SlackError("users_list_not_supplied")
        elif len(users) == 1:
            channel = self.dm_channel(users[0])
        else:
            channel = _short_id("G", ",".join(sorted(users)))
        return {"no_op": False, "already_open": False, "channel": {"id": channel}}

    def _user_info(self, args: dict[str, Any]) -> dict[str, Any]:
        user = str(args.get("user") or "")
        if user == BOT_USER:
            info: dict[str, Any] = {"name": "beamwatch", "real_name": "beamwatch",
                                    "is_bot": True}
        elif user in self.users:
            info = self.users[user]
        else:
            raise SlackError("user_not_found")
        name = info.get("name", user.lower())
        real_name = info.get("real_name", name)
        profile = {"real_name": real_name, "display_name": info.get("display_name", name)}
        return {"user": {"id": user, "team_id": TEAM_ID, "name": name, "real_name": real_name,
                         "deleted": False, "is_bot": False, "tz": "Europe/London",
                         "profile": profile, **info}}

    def _usergroups_list(self, args: dict[str, Any]) -> dict[str, Any]:
        groups = []
        for handle, members in self.usergroups.items():
            group = {"id": self.usergroup_id(handle), "team_id": TEAM_ID,
                     "is_usergroup": True, "name": handle, "handle": handle,
                     "description": "", "date_delete": 0, "user_count": len(members)}
            if _truthy(args.get("include_users")):
                group["users"] = list(members)
            groups.append(group)
        return {"usergroups": groups}

    def _usergroup_users(self, args: dict[str, Any]) -> dict[str, Any]:
        # By id, as Slack wants: a handle here is a caller's bug.
        for handle, members in self.usergroups.items():
            if self.usergroup_id(handle) == args.get("usergroup"):
                return {"users": list(members)}
        raise SlackError("no_such_subteam")

    def _upload_url(self, args: dict[str, Any]) -> dict[str, Any]:
        if not args.get("filename") or not str(args.get("length", "")).isdigit():
            raise SlackError("invalid_arguments")
        file_id = f"F0FAKE{next(self._file_ids):04d}"
        self._files[file_id] = {"filename": args["filename"], "length": int(args["length"]),
                                "data": None}
        return {"upload_url": f"http://{LOOPBACK}:{self.port}/upload/v1/{file_id}",
                "file_id": file_id}

    def _complete_upload(self, args: dict[str, Any]) -> dict[str, Any]:
        files = args.get("files")
        if not isinstance(files, list) or not files:
            raise SlackError("invalid_arguments")
        channel = self._channel_id(args["channel_id"]) if args.get("channel_id") else None
        done = []
        for f in files:
            stored = self._files.get(f.get("id"))
            if stored is None or stored["data"] is None:
                raise SlackError("file_not_found")
            done.append({"id": f["id"], "name": stored["filename"],
                         "title": f.get("title") or stored["filename"],
                         "size": len(stored["data"]), "user": BOT_USER,
                         "channels": [channel] if channel else []})
        return {"files": done}

    def _connections_open(self, args: dict[str, Any]) -> dict[str, Any]:
        ticket = uuid.uuid4()
        return {"url": f"ws://{LOOPBACK}:{self.port}/link?ticket={ticket}&app_id={APP_ID}"}

    async def _upload(self, request: web.Request) -> web.Response:
        """The upload URL (files.slack.com/upload/v1/... in Slack): raw bytes or a form."""
        file_id = request.match_info["file_id"]
        if request.content_type == "multipart/form-data":
            form = await request.post()
            fields = [v for v in form.values() if isinstance(v, web.FileField)]
            data = fields[0].file.read() if fields else b""
        else:
            data = await request.read()
        with self._cond:
            if file_id not in self._files:
                return web.Response(status=404, text="file_not_found")
            self._files[file_id]["data"] = data
            self._cond.notify_all()
        return web.Response(text=f"OK - {len(data)}")

    # --- response_url -----------------------------------------------------------------

    def response_url(self, name: str) -> str:
        """A response_url (as in a slash command or interaction payload) that records."""
        return f"http://{LOOPBACK}:{self.port}/response/{name}"

    def responses(self, name: str) -> list[Any]:
        with self._cond:
            return list(self._responses.get(name, []))

    def wait_for_response(self, name: str, predicate: Callable[[Any], bool] | None = None,
                          timeout: float = 10) -> Any:
        """The first JSON body POSTed to response_url(name) (matching predicate)."""
        return self._wait(lambda: [r for r in self._responses.get(name, [])
                                   if predicate is None or predicate(r)],
                          timeout, f"a POST to response_url({name!r})")

    async def wait_for_response_async(self, name: str,
                                      predicate: Callable[[Any], bool] | None = None,
                                      timeout: float = 10) -> Any:
        return await asyncio.to_thread(self.wait_for_response, name, predicate, timeout)

    async def _response(self, request: web.Request) -> web.Response:
        try:
            body = json.loads(await request.read())
        except ValueError:
            return web.Response(status=400, text="invalid_payload")
        with self._cond:
            self._responses[request.match_info["name"]].append(body)
            self._cond.notify_all()
        return web.Response(text="ok")  # Slack's response_url answers a bare "ok"

    # --- Socket Mode ------------------------------------------------------------------

    def refuse_connections(self, n: int = 1) -> None:
        """The next n apps.connections.open answer HTTP 500, ok: false."""
        self.fail_next("apps.connections.open", error="internal_error", status=500,
                       retry_after=None, times=n)

    @property
    def connections_opened(self) -> int:
        """How many apps.connections.open calls came (refused ones included)."""
        return len(self.calls("apps.connections.open"))

    @property
    def open_connections(self) -> int:
        with self._cond:
            return len(self._sockets)

    def wait_connected(self, n: int = 1, timeout: float = 10) -> int:
        """Wait until n WebSockets have been accepted in all (dropped ones count)."""
        return self._wait(lambda: [self._accepted] if self._accepted >= n else [],
                          timeout, f"{n} Socket Mode connection(s)")

    async def wait_connected_async(self, n: int = 1, timeout: float = 10) -> int:
        return await asyncio.to_thread(self.wait_connected, n, timeout)

    def push_envelope(self, type_: str, payload: dict[str, Any], *, retry_attempt: int = 0,
                      retry_reason: str = "", accepts_response_payload: bool = True) -> str:
        """Send an envelope ("events_api", "slash_commands", "interactive") on the newest
        open socket; its envelope_id."""
        envelope_id = str(uuid.uuid4())
        envelope = {"envelope_id": envelope_id, "type": type_, "payload": payload,
                    "accepts_response_payload": accepts_response_payload,
                    "retry_attempt": retry_attempt, "retry_reason": retry_reason}
        self._send(json.dumps(envelope), newest_only=True)
        return envelope_id

    def send_disconnect(self, reason: str = "refresh_requested") -> None:
        """Slack's {"type": "disconnect"} (sent before it retires a link) on every socket."""
        self._send(json.dumps({"type": "disconnect", "reason": reason,
                               "debug_info": {"host": "applink-fake"}}), newest_only=False)

    def wait_for_ack(self, envelope_id: str, timeout: float = 10) -> dict[str, Any]:
        """What the client sent back for the envelope: {"envelope_id", "payload"?}."""
        return self._wait(lambda: [self._acks[envelope_id]] if envelope_id in self._acks
                          else [], timeout, f"the ack of envelope {envelope_id}")

    async def wait_for_ack_async(self, envelope_id: str, timeout: float = 10) -> dict[str, Any]:
        return await asyncio.to_thread(self.wait_for_ack, envelope_id, timeout)

    def drop_connections(self) -> int:
        """Abort every open socket, with no close frame (a network failure); how many."""

        async def drop() -> int:
            return self._abort_sockets()

        return self._run(drop())

    def _abort_sockets(self) -> int:
        with self._cond:
            sockets, self._sockets = self._sockets, []
            self._cond.notify_all()
        for s in sockets:
            if s.transport is not None:
                s.transport.abort()
        return len(sockets)

    def _send(self, text: str, *, newest_only: bool) -> None:
        with self._cond:
            sockets = self._sockets[-1:] if newest_only else list(self._sockets)
        if not sockets:
            raise AssertionError("no Socket Mode connection is open (wait_connected first)")

        async def send() -> None:
            for s in sockets:
                await s.ws.send_str(text)  # never waits on the client: safe from its loop

        self._run(send())

    async def _link(self, request: web.Request) -> web.WebSocketResponse:
        # autoping answers the client's pings at once, as Slack does: slack_sdk's
        # "sdk-ping-pong:<time>" pong is what keeps it from calling the link stale.
        ws = web.WebSocketResponse(autoping=True)
        transport = request.transport
        await ws.prepare(request)
        socket = _Socket(ws, transport)
        with self._cond:
            others = len(self._sockets)
        await ws.send_json({"type": "hello", "num_connections": others + 1,
                            "debug_info": {"host": "applink-fake", "build_number": 1,
                                           "approximate_connection_time": 18060},
                            "connection_info": {"app_id": APP_ID}})
        with self._cond:  # registered after the hello, so no envelope can overtake it
            self._sockets.append(socket)
            self._accepted += 1
            self._cond.notify_all()
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                try:
                    data = json.loads(msg.data)
                except ValueError:
                    continue
                if isinstance(data, dict) and "envelope_id" in data:
                    with self._cond:
                        self._acks[data["envelope_id"]] = data
                        self._cond.notify_all()
        finally:
            with self._cond:
                if socket in self._sockets:
                    self._sockets.remove(socket)
                self._cond.notify_all()
        return ws


async def _parse_args(request: web.Request) -> dict[str, Any]:
    """The call's arguments, wherever slack_sdk put them: the query string (GET), a JSON
    body (chat.*) or a form (most others), with JSON-in-form fields decoded."""
    args: dict[str, Any] = dict(request.query)
    if request.content_type == "application/json":
        raw = await request.read()
        body = json.loads(raw) if raw.strip() else {}
        if isinstance(body, dict):
            args.update(body)
    elif request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        form = await request.post()
        for key, value in form.items():
            args[key] = value.file.read() if isinstance(value, web.FileField) else value
    for key in JSON_FIELDS & args.keys():
        if isinstance(args[key], str):
            try:
                args[key] = json.loads(args[key])
            except ValueError:
                pass  # left as sent: the method decides whether that is an error
    return args
