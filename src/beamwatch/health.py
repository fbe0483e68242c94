"""beamwatch's own health: what the `beamwatch.*` checks read and the heartbeat judges.

A callout system that stops alerting must not look healthy. `Health` turns the
engine's counters, the outbox, the CA channels and the event loop into one
number per metric (`config.schema.INTERNAL_METRICS`), each with a note saying
what it means. The `InternalSource` samples it each second, so those numbers
are checks like any other: evaluated, logged, routed, muted, shown by `status`.

Reading never blocks the loop: the outbox and quarantine counts come from a
query run at most every few seconds on the engine's writer thread and cached.
That thread is the one every store write goes through, so a query that does
not come back is itself news: the store is stuck (SQLite locked, PostgreSQL
hanging), and `beamwatch.store` says so before any write has timed out.

A check cannot page when the store is down (nothing is notified before it is
stored), and nothing inside a dead process pages at all: the `Heartbeat` covers
both. It pings an outside service (Healthchecks, Uptime Kuma) only while the
engine is really healthy, and that service pages someone when the pings stop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import httpx
from sqlalchemy import and_, func, or_, select

from .clock import Clock
from .config.schema import INTERNAL_SOURCE, Config, HeartbeatConfig
from .notify._redact import redact, register
from .sources.internal import InternalSource
from .store import tables as t

if TYPE_CHECKING:
    from .engine.engine import Engine
    from .store import Store

log = logging.getLogger("beamwatch.notify.heartbeat")  # beamwatch.notify: redacted

REFRESH_EVERY = 5.0  # seconds between outbox/quarantine queries
STORE_SLOW = 5.0  # a query waiting this long on the writer thread: the store is stuck
HOUR = 3600.0
# the heartbeat is withheld past these: beamwatch is alive but not doing its job
TICK_LATE = 10.0
OUTBOX_STUCK = 600.0
LOOP_LATE = 5.0
LAG_EVERY = 0.5  # the loop-lag probe sleeps this long and measures the overshoot
LAG_WINDOW = 10  # probes: the lag reported is the worst of the last 5 s


@dataclass(frozen=True)
class Reading:
    value: float
    note: str


@dataclass(frozen=True)
class OutboxFigures:
    """What the store says about delivery, at one time."""

    due: int  # notifications due (or tried and not yet delivered)
    oldest_since: float | None  # since when the oldest of them should have gone out
    oldest_to: str | None
    oldest_error: str | None
    failed: int  # notifications failed for good in the last hour
    failed_last: str | None
    quarantined: int  # rows refused for good in the last hour
    quarantined_last: str | None


def outbox_figures(store: Store, now: float) -> OutboxFigures:
    """One read of the outbox and the quarantine (on the writer thread)."""
    n, a, q = t.notifications.c, t.attempts.c, t.quarantine.c
    undelivered = n.status.in_(("pending", "sending"))
    # a row in retry backoff has been late since its first attempt; a repeat or an
    # escalation scheduled for later is not late at all until it is due
    first_try = (select(a.notification_id.label("nid"), func.min(a.time).label("at"))
                 .where(a.notification_id.in_(select(n.id).where(undelivered)))
                 .group_by(a.notification_id).subquery())
    since = func.coalesce(first_try.c.at, n.next_attempt_at)
    late = and_(undelivered, or_(n.next_attempt_at <= now, n.attempts > 0))
    joined = t.notifications.outerjoin(first_try, first_try.c.nid == n.id)
    permanent = and_(a.time >= now - HOUR, a.ok.is_(False), a.retry.is_(False))
    with store.engine.connect() as conn:
        due = conn.execute(select(func.count()).select_from(joined).where(late)).scalar_one()
        oldest = conn.execute(select(since, n.destination, n.last_error).select_from(joined)
                              .where(late).order_by(since).limit(1)).first()
        failed = conn.execute(select(func.count(func.distinct(a.notification_id)))
                              .where(permanent)).scalar_one()
        failed_last = conn.execute(
            select(n.destination, a.detail).select_from(t.attempts.join(
                t.notifications, n.id == a.notification_id))
            .where(permanent).order_by(a.id.desc()).limit(1)).first()
        quarantined = conn.execute(select(func.count()).select_from(t.quarantine)
                                   .where(q.time >= now - HOUR)).scalar_one()
        quarantined_last = conn.execute(select(q.kind, q.check_id, q.error)
                                        .where(q.time >= now - HOUR)
                                        .order_by(q.id.desc()).limit(1)).first()
    return OutboxFigures(
        due=due, oldest_since=oldest[0] if oldest else None,
        oldest_to=oldest[1] if oldest else None, oldest_error=oldest[2] if oldest else None,
        failed=failed, failed_last=f"{failed_last[0]}: {failed_last[1]}" if failed_last else None,
        quarantined=quarantined,
        quarantined_last=(f"{quarantined_last[0]} of {quarantined_last[1] or '-'}: "
                          f"{quarantined_last[2]}") if quarantined_last else None)


def _why(error: BaseException) -> str:
    """The error's class and first line, without the SQL or a URL."""
    orig = getattr(error, "orig", None) or error
    text = str(orig).strip().splitlines()[0] if str(orig).strip() else ""
    return redact(f"{type(orig).__name__}: {text}"[:300])


class Health:
    """beamwatch's own health, read on the loop without waiting for anything."""

    def __init__(self, engine: Engine, clock: Clock):
        self.engine = engine
        self.clock = clock
        self.loop_lag = 0.0
        self.tasks = 0  # asyncio tasks alive on the loop (a leak shows as a steady climb)
        self._ca_of: tuple[object, set[str]] = (None, set())
        self.figures: OutboxFigures | None = None
        self._refreshing: asyncio.Task | None = None
        self._query_started: float | None = None
        self._last_refresh = float("-inf")
        self._read_failing_since: float | None = None
        self._read_error: str | None = None
        self._seen = (0, clock.now())  # (samples from other sources, when that count changed)

    # -- the metrics ---------------------------------------------------------------------

    def read(self, now: float) -> dict[str, Reading]:
        """Every metric now; starts a refresh of the store figures when they are due."""
        self._maybe_refresh(now)
        return {"store": self._store(now), "quarantine": self._quarantine(),
                "outbox": self._outbox(now), "delivery": self._delivery(),
                "ca": self._ca(), "loop": self._loop(), "samples": self._samples(now)}

    def _store(self, now: float) -> Reading:
        stats = self.engine.stats
        since = getattr(stats, "store_failing_since", None)
        if since is not None:
            error = getattr(stats, "store_last_error", None) or "writes fail"
            return Reading(now - since, f"store failing for {now - since:.0f} s: {error}")
        started = self._query_started
        if started is not None and now - started >= STORE_SLOW:
            return Reading(now - started, f"the store has not answered for {now - started:.0f} s"
                                          " (locked or hanging)")
        if self._read_failing_since is not None:
            age = now - self._read_failing_since
            return Reading(age, f"store failing for {age:.0f} s: {self._read_error}")
        return Reading(0.0, "store writable")

    def _quarantine(self) -> Reading:
        f = self.figures
        if f is None or not f.quarantined:
            return Reading(0.0, "no row refused in the last hour")
        return Reading(float(f.quarantined), f"{f.quarantined} rows refused by the store in the "
                       f"last hour, kept in table quarantine; the last: {f.quarantined_last}")

    def _outbox(self, now: float) -> Reading:
        f = self.figures
        if f is None or f.oldest_since is None:
            return Reading(0.0, "no notification waiting")
        age = max(0.0, now - f.oldest_since)
        error = f"; last error: {f.oldest_error}" if f.oldest_error else ""
        return Reading(age, f"{f.due} notifications undelivered, the oldest due {age:.0f} s ago "
                            f"(to {f.oldest_to}{error})")

    def _delivery(self) -> Reading:
        f = self.figures
        if f is None or not f.failed:
            return Reading(0.0, "no permanent delivery failure in the last hour")
        return Reading(float(f.failed), f"{f.failed} notifications failed for good in the "
                                        f"last hour; the last: {f.failed_last}")

    def _ca_sources(self) -> set[str]:
        """The Channel Access sources: what `beamwatch.ca` and `.samples` are about (PVA,
        HTTP, SQL, files and heartbeats have checks of their own)."""
        config = self.engine.config
        if self._ca_of[0] is not config:  # once per config, not every second: 10k checks
            names = {c.input_source for c in config.checks if c.input_key == "pv"}
            self._ca_of = (config, names | ({"ca"} if config.modes.from_pv else set()))
        return self._ca_of[1]

    def _ca(self) -> Reading:
        total = down = 0
        ca = self._ca_sources()
        counted = set()
        for name in ca:  # a CA source counts its channels itself: no scan of 100k checks
            stats = getattr(self.engine.sources.get(name), "stats", None)
            figures = stats() if callable(stats) else {}
            if "subscribed" in figures and "connected" in figures:
                total += figures["subscribed"]
                down += figures["subscribed"] - figures["connected"]
                counted.add(name)
        for (source, _address), runtimes in (self.engine.by_address.items()
                                             if counted != ca else ()):
            if source not in ca or source in counted or not runtimes:
                continue
            total += 1
            sample = runtimes[0].input.sample
            down += sample is None or not sample.connected
        if not total:
            return Reading(0.0, "no Channel Access channels")
        return Reading(100.0 * down / total, f"{down} of {total} channels disconnected")

    def _loop(self) -> Reading:
        return Reading(self.loop_lag, f"the event loop ran {self.loop_lag:.2f} s late")

    def _samples(self, now: float) -> Reading:
        ca = self._ca_sources()
        if not ca:
            return Reading(0.0, "no Channel Access checks")
        by_source = self.engine.stats.samples_by_source
        count = sum(by_source.get(name, 0) for name in ca)
        if count != self._seen[0]:
            self._seen = (count, now)
        age = max(0.0, now - self._seen[1])
        return Reading(age, f"last sample {age:.0f} s ago ({count} since start)")

    # -- the store figures, off the loop -------------------------------------------------

    def _maybe_refresh(self, now: float) -> None:
        if self._refreshing is not None or now - self._last_refresh < REFRESH_EVERY:
            return
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # read outside a loop (a report, a test): the cache only
            return
        self._refreshing = asyncio.ensure_future(self.refresh(now))

    async def refresh(self, now: float) -> None:
        """Query the outbox and quarantine on the writer thread; keep the last figures
        when the store does not answer (the store metric reports that)."""
        self._last_refresh, self._query_started = now, now
        try:
            self.figures = await self.engine.write(outbox_figures, self.engine.store, now)
            self._read_failing_since = self._read_error = None
        except Exception as e:  # the store is down: that is the news, never a crash
            if self._read_failing_since is None:
                self._read_failing_since = now
            self._read_error = _why(e)
        finally:
            self._query_started = None
            self._refreshing = None

    # -- the heartbeat's judgement -------------------------------------------------------

    def verdict(self, now: float) -> tuple[bool, str]:
        """Healthy enough to tell the outside world so: ticks on time, the store
        writable, the outbox moving, the loop on time. Else why not."""
        problems = []
        last_tick = getattr(self.engine.stats, "last_tick", None)
        if last_tick is not None and now - last_tick > TICK_LATE:
            problems.append(f"no engine tick for {now - last_tick:.0f} s")
        readings = self.read(now)
        if readings["store"].value > 0:
            problems.append(readings["store"].note)
        if readings["outbox"].value > OUTBOX_STUCK:
            problems.append(readings["outbox"].note)
        if readings["loop"].value > LOOP_LATE:
            problems.append(readings["loop"].note)
        return (not problems, "; ".join(problems) or "healthy")


class Heartbeat:
    """The outbound dead-man's switch: GET `url` every `every` while healthy, else
    `fail_url` (Healthchecks' /fail) when given, else nothing. Never raises; the
    URLs are secrets and never logged."""

    def __init__(self, config: HeartbeatConfig | None, health: Health,
                 client: httpx.AsyncClient | None = None):
        self.health = health
        self.client = client or httpx.AsyncClient(follow_redirects=True)
        self.sent = 0  # pings answered with success (for tests and the log)
        self._healthy: bool | None = None
        self.configure(config)

    def configure(self, config: HeartbeatConfig | None) -> None:
        self.config = config
        if config is not None:
            register(config.url, config.fail_url)

    async def run(self) -> None:
        while True:
            config = self.config
            if config is not None:
                await self.beat()
            await asyncio.sleep(config.every if config is not None else 5.0)

    async def beat(self) -> str:
        """One beat: 'ok' (pinged url), 'fail' (pinged fail_url), 'withheld' or 'error'."""
        config = self.config
        if config is None:
            return "withheld"
        healthy, why = self.health.verdict(self.health.clock.now())
        self._tell_change(healthy, why)
        target = config.url if healthy else config.fail_url
        if target is None:
            return "withheld"
        try:
            response = await self.client.get(target.get(), timeout=config.timeout)
        except httpx.HTTPError as e:
            log.warning("heartbeat ping failed: %s", redact(type(e).__name__ + f": {e}"))
            return "error"
        if response.status_code >= 400:
            log.warning("heartbeat ping refused: HTTP %d", response.status_code)
            return "error"
        self.sent += 1
        return "ok" if healthy else "fail"

    def _tell_change(self, healthy: bool, why: str) -> None:
        if healthy == self._healthy:
            return
        self._healthy = healthy
        if healthy:
            log.warning("heartbeat: healthy, pinging")
        else:
            log.error("heartbeat withheld (%s): %s",
                      "pinging fail_url" if self.config and self.config.fail_url else "silent",
                      why)

    async def aclose(self) -> None:
        await self.client.aclose()


class SelfMonitor:
    """Everything of self-monitoring that runs in `beamwatch run`: the internal source,
    the loop-lag probe and the heartbeat. `App` holds one; the logic lives here."""

    def __init__(self, config: Config, engine: Engine, clock: Clock,
                 client: httpx.AsyncClient | None = None,
                 monotonic: Callable[[], float] = time.monotonic):
        self.health = Health(engine, clock)
        self.source = InternalSource(self.health, clock, engine.source_sink(INTERNAL_SOURCE))
        self.heartbeat = Heartbeat(config.monitor.heartbeat, self.health, client)
        self._monotonic = monotonic
        self._lags: deque[float] = deque(maxlen=LAG_WINDOW)

    def poll(self) -> None:
        self.source.poll()

    def reconfigure(self, config: Config) -> None:
        self.heartbeat.configure(config.monitor.heartbeat)

    def tasks(self) -> list[asyncio.Task]:
        return [asyncio.create_task(self._sample()), asyncio.create_task(self.heartbeat.run())]

    async def _sample(self) -> None:
        """Every LAG_EVERY: measure how late the loop woke us; every second, sample.
        Its own task, so a tick stuck on the store does not stop the self-monitor."""
        probes = 0
        while True:
            before = self._monotonic()
            await asyncio.sleep(LAG_EVERY)
            self.note_lag(self._monotonic() - before - LAG_EVERY)
            self.health.tasks = len(asyncio.all_tasks())
            probes += 1
            if probes % 2 == 0:
                try:
                    self.poll()
                except Exception:  # a bug here must not end self-monitoring
                    log.exception("self-monitor sampling failed")

    def note_lag(self, lag: float) -> None:
        self._lags.append(max(0.0, lag))
        self.health.loop_lag = max(self._lags)

    async def aclose(self) -> None:
        await self.heartbeat.aclose()

