"""Serving the app: the socket is bound before anything else starts (a port in use
is a clear error at once, not a traceback from uvicorn), then uvicorn serves it as
one task of `App.run`, in the engine's own event loop. `App.run` owns SIGTERM and
SIGINT: uvicorn's own signal handling is turned off, and the server stops when the
app's stop event is set."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
from collections.abc import Iterator
from typing import TYPE_CHECKING

import uvicorn

from ..config.schema import WebConfig
from ..model import Severity
from ..sources.alertmanager import ALERTMANAGER_SOURCE, Received, WebhookIn
from ..sources.heartbeat import HEARTBEAT_SOURCE, Beat, judge
from .alertmanager import NotStarted
from .api import Backend
from .app import create_app
from .metrics import Snapshot

if TYPE_CHECKING:
    from fastapi import FastAPI

    from ..app import App
    from ..slack.bot import SlackBot

log = logging.getLogger("beamwatch.web")

GRACE = 2.0  # seconds open requests get at stop


class WebError(Exception):
    """The HTTP server cannot start, with the reason people can act on."""


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT after a restart
    # accepted connections inherit it (Linux): without it a small answer on a kept-alive
    # connection waits out the client's delayed ACK, 40 ms a request (bench/dashboard.py)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
        sock.listen(128)
    except OSError as e:
        sock.close()
        where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        if e.errno == errno.EADDRINUSE:
            raise WebError(f"cannot listen on {where}: the port is already in use (another "
                           "beamwatch?); set web.listen to a free HOST:PORT, or off") from None
        raise WebError(f"cannot listen on {where}: {e.strerror or e}") from None
    sock.setblocking(False)
    return sock


class _Server(uvicorn.Server):
    """uvicorn without its own signal handlers: App.run stops it."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    def install_signal_handlers(self) -> None:  # uvicorn before 0.29
        pass


class WebServer:
    """One bound socket and the app served on it."""

    def __init__(self, app: FastAPI, sock: socket.socket):
        self.sock = sock
        config = uvicorn.Config(app, lifespan="off", log_config=None, access_log=False,
                                timeout_graceful_shutdown=GRACE, server_header=False)
        self.server = _Server(config)
        host, port = sock.getsockname()[:2]
        self.url = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    async def serve(self, stop: asyncio.Event) -> None:
        """Serve until `stop` is set, then finish open requests (at most GRACE)."""
        task = asyncio.create_task(self.server.serve(sockets=[self.sock]))
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
        self.server.should_exit = True
        stopping.cancel()
        try:
            await task
        except (Exception, SystemExit) as e:  # uvicorn exits the process on some failures
            log.error("the HTTP server stopped: %s", e)
        finally:
            self.sock.close()


def for_app(application: App, web: WebConfig | None = None,
            slack: SlackBot | None = None) -> WebServer | None:
    """The HTTP server of a running App, bound now (raises WebError), or None when
    `web.listen` is off. `slack`: the bot, whose HTTP mode is served here."""
    address = (web or application.config.web).address
    if address is None:
        return None
    sock = bind(*address)
    app = create_app(receive_beat=lambda check_id, token, message:
                     _receive(application, check_id, token, message),
                     verdict=lambda: verdict(application),
                     slack_events=(slack.http_handler() if slack is not None
                                   and slack.settings.mode == "http" else None),
                     backend=Backend(lambda: application.config, application.store,
                                     application.engine.history.unstored,
                                     application.clock.now, application.engine.live_value),
                     web=lambda: application.config.web,
                     snapshot=lambda: snapshot(application),
                     leader=lambda: leader_url(application),
                     receive_alerts=lambda payload: _alerts(application, payload))
    return WebServer(app, sock)


def leader_url(application: App) -> str | None:
    """Where the leader's web front end is, while this instance stands by."""
    seen = application.leadership.leader
    if application.leadership.role == "leader" or seen is None or seen.expired:
        return None
    return seen.url


def verdict(application: App) -> tuple[bool, str]:
    """/healthz: the self-monitor's judgement; a standby is healthy while it stands by."""
    role = application.leadership.role
    if role == "standby":
        return True, "standby: another instance leads"
    if role == "starting" or not application.ready.is_set():
        return False, "starting"
    return application.monitor.health.verdict(application.clock.now())


def snapshot(application: App) -> Snapshot:
    """The metrics of a running App, from memory."""
    engine, health = application.engine, application.monitor.health
    now = application.clock.now()
    checks = dict.fromkeys(("OK", "MINOR", "MAJOR", "INVALID"), 0)
    acked = 0
    leader = application.leadership.role == "leader"
    stored = {} if leader else application.store.severities()  # a standby's engine is idle
    for check_id in application.config.check_ids:
        state = engine.state_of(check_id)
        severity = (state.severity.name if state is not None else "OK") if leader else \
            Severity(stored.get(check_id, 0)).name
        checks[severity] += 1
        acked += bool(state is not None and state.acked and state.severity)
    figures = health.figures
    stats = engine.stats
    return Snapshot(
        beamline=application.config.beamline, checks=checks, muted_or_acked={"acked": acked},
        samples=dict(stats.samples_by_source), transitions=stats.transitions,
        notifications_sent=application.worker.sent,
        notification_failures=application.worker.failed,
        outbox_due=figures.due if figures else None,
        outbox_oldest_age=(now - figures.oldest_since) if figures and figures.oldest_since
        else (0.0 if figures else None),
        store_write_errors=stats.write_errors, quarantined=stats.quarantined,
        loop_lag=health.loop_lag, tasks=health.tasks,
        last_tick_age=(now - stats.last_tick) if stats.last_tick is not None else None,
        healthy=health.verdict(now)[0], leader=leader)


def _receive(application: App, check_id: str, token: str | None, message: str | None) -> Beat:
    source = application.sources.get(HEARTBEAT_SOURCE)
    if source is not None:
        return source.receive(check_id, token, message)
    # no heartbeat check when the app started: answer from the config alone
    outcome = judge(application.config, check_id, token)
    # a check added by a reload: its source is built at the next start
    return Beat.NOT_STARTED if outcome is Beat.ACCEPTED else outcome


async def _alerts(application: App, payload: WebhookIn) -> Received:
    source = application.sources.get(ALERTMANAGER_SOURCE)
    if source is not None:
        return await source.receive(payload)
    if any(c.alert is not None for c in application.config.checks):
        raise NotStarted  # added by a reload: its source is built at the next start
    # no alert: check at all: every alert is unmatched (said in the answer and the log)
    names = [a.labels.get("alertname", "alert") for a in payload.alerts]
    if names:
        log.info("alerts from Alertmanager, but no alert: check: %s", ", ".join(names[:10]))
    return Received(len(payload.alerts), [], names)
