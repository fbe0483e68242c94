"""The composition root: config -> store, sources, engine, outbox; run, reload, stop."""

from __future__ import annotations

import asyncio
import gc
import importlib
import logging
import signal
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from .clock import Clock, SystemClock
from .config import Config, ConfigError, load_config
from .config.schema import INTERNAL_SOURCE
from .engine import commands as commands_
from .engine.engine import Engine
from .engine.noise import Noise
from .engine.past import stored_values, with_archive
from .facility.snapshot import CHECK_EVERY as ONCALL_EVERY
from .facility.snapshot import OnCallSnapshot
from .ha import Leadership, here
from .health import SelfMonitor
from .notify.registry import NotifyConfigError, build_registry
from .notify.worker import OutboxWorker
from .paging import digest
from .paging.decide import Decider
from .paging.reminders import reminder_rows
from .routing import overlays as overlays_
from .routing.calendars import CalendarFeeds
from .routing.oncall import OnCallResolver
from .routing.router import Router
from .sources.base import Source
from .store import Store
from .store.alerts import AlertStore
from .store.audit import AuditLog
from .store.errors import describe, is_transient
from .store.noise import NoiseStore
from .store.overlays import Overlay, OverlayStore
from .systemd import Notifier

log = logging.getLogger("beamwatch")

TICK = 1.0  # seconds: delays, staleness and commands are handled at this granularity
VALUES_EVERY = 2.0  # latest values for `status`
BEAT_EVERY = 5.0
PURGE_EVERY = 3600.0  # at most; a short retention is purged more often (purge_every)
PURGE_FIRST = 60.0  # after taking the lead: an instance restarted within the hour purges too
SERVICE_GRACE = 5.0  # seconds a service (the HTTP server) gets to finish at stop
# how `App.run` ended: stopped (SIGTERM); the lease lost to the other instance; or the
# start as leader failed (the caller starts the instance again, as the standby)
STOPPED, STEPPED_DOWN, FAILED = "stopped", "stepped down", "failed"
# How long an outbox claim holds before its send starts. A claim of a leader that died
# is taken over when it lapses: short on PostgreSQL (an HA pair's standby waits it
# out); SQLite keeps the long one (a write there may wait 30 s for its lock).
CLAIM_LEASE = {"postgresql": 10.0}

Service = Callable[[asyncio.Event], Awaitable[None]]  # run beside the engine until the event


# source kind -> (module, class); imported only when a check needs it (libca, p4p,
# database drivers are heavy). Each class has from_config(name, config, clock).
SOURCE_CLASSES = {
    "ca": ("beamwatch.sources.ca", "CaSource"),
    "pva": ("beamwatch.sources.pva", "PvaSource"),
    "http": ("beamwatch.sources.http", "HttpSource"),
    "sql": ("beamwatch.sources.sql", "SqlSource"),
    "files": ("beamwatch.sources.files", "FileSource"),
    "heartbeat": ("beamwatch.sources.heartbeat", "HeartbeatSource"),
    "alertmanager": ("beamwatch.sources.alertmanager", "AlertmanagerSource"),
}


class Laps:
    """Seconds each step of a start took (wall clock): logged with `running`, so that a
    slow takeover says where its time went."""

    def __init__(self):
        self.laps: dict[str, float] = {}
        self._last = time.perf_counter()

    def __call__(self, name: str) -> None:
        now = time.perf_counter()
        self.laps[name] = round(now - self._last, 3)
        self._last = now


def source_kind(config: Config, name: str) -> str:
    """The kind of a source name: a declared source's kind, or the built-in of that name."""
    declared = config.sources.get(name)
    return declared.kind if declared is not None else name


def build_sources(config: Config, clock: Clock | None = None) -> dict[str, Source]:
    """One source object per source that some check uses."""
    used = {c.input_source for c in config.checks if c.input_source != INTERNAL_SOURCE}
    if config.modes.from_pv:
        used.add("ca")
    sources: dict[str, Source] = {}
    for name in sorted(used):
        module, cls = SOURCE_CLASSES[source_kind(config, name)]
        source_class = getattr(importlib.import_module(module), cls)
        sources[name] = source_class.from_config(name, config, clock)
    return sources


class App:
    """`beamwatch run`: everything that runs in one process, wired together."""

    def __init__(self, config_path: str | Path, clock: Clock | None = None,
                 sources: dict[str, Source] | None = None, config: Config | None = None):
        """`config`: already loaded (replay runs a changed copy); else read from the file."""
        self.config_path = Path(config_path)
        self.clock = clock or SystemClock()
        self.config = config if config is not None else load_config(self.config_path)
        self.store = Store.for_config(self.config)
        self.leadership = Leadership(self.store, here())
        self.store.fence = self.leadership.fence  # decisions and sends: the leader's only
        self.sources = dict(sources) if sources is not None else build_sources(self.config,
                                                                               self.clock)
        self.registry = build_registry(self.config)
        self.worker = OutboxWorker(self.config, self.store, self.registry, self.clock,
                                   name=self.leadership.me.id,
                                   lease=CLAIM_LEASE.get(self.store.dialect, 60.0))
        self.worker.may_send = self.leadership.held
        self.noise_store = NoiseStore(self.store)
        past = stored_values(self.store)  # a forecast's first window after a start
        if any(src.kind == "archiver" for src in self.config.sources.values()):
            past = with_archive(self.config, past)  # and before beamwatch watched
        self.engine = Engine(self.config, self.sources, self.store, self.clock,
                             keep=self.noise_store.keep, on_committed=self.worker.wake,
                             past_values=past)
        self.calendars = CalendarFeeds(self.config, self.config_path.parent, self.clock)
        self.overlays: list[Overlay] = []  # runtime changes over the file (routing/overlays.py)
        self._digest_day: str | None = None  # the day whose digest is queued
        self.decider = self._decider(self.config)
        self.engine.use(self.decider)
        self.monitor = SelfMonitor(self.config, self.engine, self.clock)  # beamwatch.* checks
        self.sources.setdefault(self.monitor.source.name, self.monitor.source)
        self.started = self.clock.now()
        self._stood_by = False  # this instance waited as an HA standby before it led
        self.ready = asyncio.Event()  # set once it leads and has subscribed
        self.start_laps: dict[str, float] = {}  # Laps of the last start
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task] = []
        self._side: dict[str, asyncio.Task] = {}  # store reads beside the tick
        self._side_failing: set[str] = set()
        self.systemd = Notifier()  # READY=1 and the watchdog, under systemd (Type=notify)
        self.oncall_snapshot = OnCallSnapshot()  # for `beamwatch facility`

    async def run(self, services: Sequence[Service] = ()) -> str:
        """Until stop(): STOPPED; or STEPPED_DOWN when this instance of an HA pair lost
        the leader's lease (the caller starts it again, as the standby). `services` (the
        HTTP server, the Slack bot) run beside it in either role, each given an event
        that ends them; they end before the engine stops."""
        loop = asyncio.get_running_loop()
        for sig, handler in ((signal.SIGTERM, self.stop), (signal.SIGINT, self.stop),
                             (signal.SIGHUP, self.reload)):
            try:
                loop.add_signal_handler(sig, handler)
            except (NotImplementedError, RuntimeError):  # not the main thread (tests)
                pass
        # The config and the checks live as long as this App: out of every later gc pass.
        # At 100k checks a full pass takes over a second; here it holds up no takeover.
        gc.collect()
        gc.freeze()
        ending = asyncio.Event()
        served = [asyncio.create_task(service(ending)) for service in services]
        beats = asyncio.create_task(self._every(BEAT_EVERY, self._beat))
        outcome = STOPPED
        try:
            await self._beat()
            if await self.leadership.wait_to_lead(self._stop, self._standing_by):
                outcome = await self._lead()
        finally:
            self.systemd.stopping()
            ending.set()
            if served:  # open requests finish while the engine still answers them
                await asyncio.wait(served, timeout=SERVICE_GRACE)
            tasks = [beats, *self._tasks, *served, *self._side.values()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.close(outcome)
        return outcome

    async def _lead(self) -> str:
        """The leader's part: take back what was going on, subscribe, decide and send
        until stop() or until the lease is lost."""
        # renewing from the first moment: a start that takes longer than the lease (10k
        # PVs to subscribe) must not hand the lease to the standby half-way
        keeper = asyncio.create_task(self.leadership.keep(self._stop))
        # Sending from the first moment too: a fault the new leader judges while it still
        # takes over 100k samples is paged as soon as it is stored, and what the old
        # leader stored but never sent goes out at once (the outbox is all it reads).
        sender = asyncio.create_task(self.worker.run(self._stop))
        self._tasks = [keeper, sender]
        try:
            await self.start()
        except Exception as e:
            if not is_transient(e):
                raise  # a bug, or a source that cannot start: `cannot start`, as ever
            # the store went away at the takeover: stand by, and try again
            log.error("could not start as the leader, standing by again: %s", describe(e))
            self._stop.set()
            return FAILED
        # Samples live for one batch but long enough to be promoted: with the default
        # thresholds the collector rescans them all the time (measured: 0.67 of raw
        # aioca throughput; 0.9 with these). Startup objects are frozen out of it (the
        # config's were at `run`: this pass sees only what starting made).
        gc.collect()
        gc.freeze()
        gc.set_threshold(50_000, 20, 100)
        self._tasks = [keeper, sender,
                       asyncio.create_task(self._every(TICK, self._tick)),
                       asyncio.create_task(self._every(VALUES_EVERY, self.engine.flush_values)),
                       asyncio.create_task(self._every(purge_every(self.config.storage.retention),
                                                       self._purge, first=PURGE_FIRST)),
                       asyncio.create_task(self._every(ONCALL_EVERY, self._publish_oncall)),
                       asyncio.create_task(self.calendars.run(self._stop)),  # off the loop
                       *self.monitor.tasks()]
        # a takeover is news to whoever reads the log (quiet by default): when it watched
        # again and where its seconds went
        (log.warning if self._stood_by else log.info)(
            "running", extra={"checks": len(self.config.checks),
                              "beamline": self.config.beamline,
                              "instance": self.leadership.me.id,
                              "start_s": round(sum(self.start_laps.values()), 3),
                              **{f"{step}_s": s for step, s in self.start_laps.items()}})
        await self._beat()
        await self._quietly(self._publish_oncall)  # never a reason not to start
        self.systemd.ready()
        stopping = asyncio.create_task(self._stop.wait())
        await asyncio.wait({stopping, keeper}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if self._stop.is_set():
            return STOPPED
        # Lost to another instance: what is decided but unstored is the new leader's
        # to decide again from the live values; nothing more is written or sent here.
        self.engine.writer.queue.clear()
        self._stop.set()  # the worker and the sources stop as at a clean stop
        return STEPPED_DOWN

    def _standing_by(self) -> None:
        """A standby has looked at the lease and it is held: say so once. To systemd a
        standby is up, and each look is its watchdog ping."""
        if not self._stood_by:
            holder = self.leadership.leader.holder if self.leadership.leader else None
            log.warning("standing by: another instance leads", extra={"leader": holder})
            self._stood_by = True
            self.systemd.ready()
            # connected while standing by: taking over does not wait for 100k PVs
            self._side["warm"] = asyncio.ensure_future(self._warm())
        self.systemd.watchdog()

    def serving(self, url: str | None) -> None:
        """The web front end's address, shown to the other instance and in `status`."""
        from dataclasses import replace

        self.leadership.me = replace(self.leadership.me, url=url)

    async def start(self) -> None:
        """Take back what was going on before a restart, then subscribe every source.
        Only as the leader: `run` waits for the lease first; called alone (tests, replay)
        it takes the lease, which must be free."""
        if self.leadership.token is None and not await self.leadership.off_loop(
                self.leadership.try_lead):
            raise RuntimeError(f"another instance leads: {self.leadership.leader}")
        lap = Laps()
        if self._stood_by:  # the checks were built at __init__: the leader changed them since
            await self.engine.write(self.engine.restore_states)
            lap("states")
        now = self.clock.now()
        incidents = await self.engine.write(self.noise_store.open_incidents)
        last = await self.engine.write(self.store.last_incidents)
        ids = sorted({i.id for i in incidents} | set(last.values()))
        paged = await self.engine.write(self.worker.outbox.paged, ids)
        self.engine.queue(self.decider.restore(incidents, paged, now, last))
        await self.engine.write(self.decider.notes.resume, self.store)  # no re-announcing
        lap("incidents")
        await self.sync_overlays()
        lap("overlays")
        await self.sync_noise()
        lap("noise")
        await self.apply_commands()  # queued while no engine ran: on the state people saw
        lap("commands")
        await self._restore_beats()
        lap("beats")
        await self._restore_alerts()
        await self.engine.start()
        lap("sources")
        await self.engine.flush()
        lap("first_flush")
        self.start_laps = lap.laps
        self.ready.set()

    async def _restore_beats(self) -> None:
        """Heartbeat checks: the last beat before the restart, from the latest values
        (value = the beat's age at `time`), so a restart neither clears an alarm that
        is up nor puts one off (sources/heartbeat.py)."""
        source = self.sources.get("heartbeat")
        if source is None or not hasattr(source, "restore"):
            return
        hearts = {c.id for c in self.config.checks if c.heartbeat is not None}
        latest = await asyncio.to_thread(self.store.latest, hearts)
        beats = {cid: v.time - float(v.value) for cid, v in latest.items()
                 if v.connected and isinstance(v.value, int | float)}
        alarming = {cid for cid in beats
                    if (state := self.engine.state_of(cid)) is not None and state.active}
        source.restore(beats, alarming)

    async def _restore_alerts(self) -> None:
        """Alertmanager's firing alerts: stored as they arrive, taken back here (it sends
        them again only every repeat_interval); from now on stored through the writer."""
        source = self.sources.get("alertmanager")
        if source is None or not hasattr(source, "restore"):
            return
        alerts = AlertStore(self.store)
        source.restore(await asyncio.to_thread(alerts.firing))

        async def keep(firing: list[dict], gone: list[str]) -> None:
            await self.engine.write(alerts.apply, firing, gone)

        source.keep = keep

    async def sync_noise(self) -> None:
        """Silences and the mode override live in the store (any front end writes them):
        mirror them into the mute stages; reminders and mode changes follow from them."""
        now = self.clock.now()
        noise = self.decider.noise
        # reads run beside the writer thread, not behind a write that waits on a lock
        silences = await asyncio.to_thread(self.noise_store.silences, now - 86400)
        for silence in silences:
            noise.silences.put(silence)
        self.engine.queue_rows(reminder_rows(noise.silences.due_reminders(now), self.config,
                                             self._destinations, now))
        override = await asyncio.to_thread(self.noise_store.active_override, now)
        self.engine.queue(self.decider.sync_mode(override, now))

    async def send_digest(self) -> None:
        """The day's digest once its time has come (paging/digest.py); its dedup key
        makes it once per day whatever restarts."""
        now = self.clock.now()
        when = digest.due(self.config, now)
        if when is None or when.day == self._digest_day:
            return
        rows = await asyncio.to_thread(digest.rows, self.config, self.store, when, now,
                                       self._destinations)
        self.engine.queue_rows(rows)
        self._digest_day = when.day

    async def sync_overlays(self) -> None:
        """Subscriptions, quiet hours and on-call takeovers changed at run time (from Slack,
        the CLI or the web): route with them from the next decision on."""
        active = await asyncio.to_thread(OverlayStore(self.store).active)
        if [o.id for o in active] == [o.id for o in self.overlays]:
            return
        previous, self.overlays = self.overlays, active
        try:
            decider = self._decider(self.config, previous=self.decider)
        except Exception:
            self.overlays = previous  # tried again next tick
            raise
        self.decider = decider
        self.engine.use(decider)
        log.info("runtime overlays applied", extra={"overlays": len(active)})

    def _in_force(self, config: Config) -> Config:
        in_force, skipped = overlays_.apply(config, self.overlays, self.clock.now())
        for why in skipped:
            log.warning("runtime overlay skipped: %s", why)
        return in_force

    def _destinations(self, person: str) -> list[str]:
        return [n.name for n in self.registry.person(person)]

    async def step(self) -> None:
        """One tick and everything it leads to, delivered: what `run` does each second,
        callable by hand with a fake clock (the acceptance tests drive time this way)."""
        await self.leadership.off_loop(self.leadership.refresh)  # `run` has a task for it
        self.monitor.poll()
        await self.send_digest()
        await self.sync_overlays()
        await self.sync_noise()
        self._tick_engine()
        await self.apply_commands()
        await self.engine.flush()
        while await self.worker.run_once():
            await self.worker.drain()
        await self.worker.drain()

    async def close(self, outcome: str = STOPPED) -> None:
        if outcome == STEPPED_DOWN:
            self.engine.writer.queue.clear()
        await self.engine.stop()
        await self.monitor.aclose()
        await self.registry.aclose()
        if outcome in (STOPPED, FAILED):  # the standby takes over at once
            await self.leadership.off_loop(self.leadership.release)
        self.leadership.close()
        self.store.close()
        gc.unfreeze()  # what a leader froze is garbage now (a step-down starts anew)

    def _decider(self, config: Config, previous: Decider | None = None) -> Decider:
        """Routing, on-call (with calendars) and the noise stages for one config. On a
        reload the running noise state (incidents, mode, silences) carries over. The
        runtime overlays are applied over `config` (the file's)."""
        config = self._in_force(config)
        feeds = self.calendars.configure(config, self.config_path.parent)  # read in the background
        router = Router(config, OnCallResolver(config, feeds=feeds))
        noise = Noise.from_config(config, self.clock.now(), getattr(previous, "noise", None),
                                  same_modes=config.modes == self.config.modes)
        decider = Decider(config, router, noise, sample_of=self.engine.sample_of,
                          state_of=self.engine.state_of)
        return decider.take_over(previous) if previous is not None else decider

    def stop(self) -> None:
        self._stop.set()

    def reload(self) -> None:
        """SIGHUP: load the file again; a bad file is reported and the old config kept."""
        try:
            config = load_config(self.config_path)
        except ConfigError as e:
            log.error("reload refused, keeping the running config:\n%s", e)
            return
        if _store_of(config) != _store_of(self.config):
            log.error("reload refused: storage.url, storage.schema and beamline cannot "
                      "change while running")
            return
        if _slack_fixed(config) != _slack_fixed(self.config):
            log.error("reload refused: the slack: section changed beyond its roles (the bot's "
                      "mode, tokens and command are read at start); restart beamwatch")
            return
        try:
            registry = build_registry(config)
        except NotifyConfigError as e:
            log.error("reload refused, keeping the running config: %s", e)
            return
        try:  # everything that can refuse the new config, before anything changes
            decider = self._decider(config, previous=self.decider)
        except Exception as e:
            log.error("reload refused, keeping the running config: %s", e)
            asyncio.ensure_future(registry.aclose())
            return
        report = self.engine.reload(config)
        self.decider = decider
        self.engine.use(decider)
        self.config = config
        old_registry = self.registry
        self.registry = registry
        self.worker.reconfigure(config, registry)
        for source in self.sources.values():  # polled sources read their checks' settings
            if hasattr(source, "reconfigure"):
                source.reconfigure(config)
        self.monitor.reconfigure(config)
        asyncio.ensure_future(old_registry.aclose())
        log.warning("config reloaded: %s", {k: len(v) for k, v in report.items()})

    async def _every(self, period: float, fn: Callable, first: float | None = None) -> None:
        failing = False
        wait = period if first is None else first
        while True:
            await asyncio.sleep(wait)
            wait = period
            try:
                result = fn()
                if asyncio.iscoroutine(result):
                    await result
            except Exception as e:
                if not failing and is_transient(e):  # the store is away: no traceback
                    log.error("periodic task %s failed: %s", getattr(fn, "__name__", fn),
                              describe(e))
                elif not failing:  # once per outage, not every period
                    log.exception("periodic task %s failed", getattr(fn, "__name__", fn))
                else:
                    log.debug("periodic task %s still failing: %s", fn, e)
                failing = True
            else:
                if failing:
                    log.warning("periodic task %s works again", getattr(fn, "__name__", fn))
                failing = False

    async def _tick(self) -> None:
        """Every second: evaluate and decide in memory, on time whatever the store does;
        the store's silences, mode override and commands are fetched beside it and used
        from memory while the store is slow or away."""
        self._tick_engine()
        self.systemd.watchdog()  # only after a tick that ran, on time: see systemd.py
        self._beside(self.send_digest)
        self._beside(self.sync_overlays)
        self._beside(self.sync_noise)
        self._beside(self.apply_commands)

    def _tick_engine(self) -> None:
        self.engine.stats.last_tick = self.clock.now()
        self.engine.tick()

    def _beside(self, fn: Callable) -> None:
        """Run `fn` as its own task unless its last run is still going (a slow store)."""
        task = self._side.get(fn.__name__)
        if task is not None and not task.done():
            return
        task = asyncio.ensure_future(self._quietly(fn))
        self._side[fn.__name__] = task

    async def _warm(self) -> None:
        try:
            await self.engine.warm()
        except Exception as e:  # e.g. a source that cannot run here: start says so again
            log.warning("could not connect the sources while standing by; they connect "
                        "when this instance leads: %s", describe(e))

    async def _quietly(self, fn: Callable) -> None:
        name = fn.__name__
        try:
            await fn()
        except Exception as e:
            if name not in self._side_failing:
                log.error("%s failed (the store?), using what is in memory: %s", name,
                          describe(e))
            self._side_failing.add(name)
        else:
            self._side_failing.discard(name)

    async def apply_commands(self) -> None:
        """Commands queued by the front ends for this engine (engine/commands.py)."""
        commands = await asyncio.to_thread(self.store.queued_commands)
        for cmd in commands:
            status, result = commands_.apply(self.engine, cmd, self.clock.now())
            if status == "expired":
                log.warning("command %d not applied: %s", cmd.id, result)
            await self.engine.flush()
            await self.engine.write(self.store.finish_command, cmd.id, status, result,
                                    self.clock.now())

    async def _beat(self) -> None:
        """This instance's row in `engine_heartbeat`: alive, and as leader or standby."""
        me = self.leadership.me
        await asyncio.to_thread(self.store.beat, me.id, me.pid, me.host, self.started,
                                self.clock.now(), str(self.config_path),
                                self.leadership.role, me.url)

    async def _publish_oncall(self) -> None:
        """Who is on call now, into the store for `beamwatch facility` (facility/snapshot.py)."""
        await self.oncall_snapshot.publish(self.decider.router.oncall, self.clock.now(),
                                           self.engine.write, self.store.save_oncall)

    async def _purge(self) -> None:
        before = self.clock.now() - self.config.storage.retention
        done = await self.engine.write(self.store.purge, before, False)
        # history in short writer jobs: alarms are stored between them
        while n := await self.engine.write(self.store.purge_history, before):
            done["value_history"] += n
        done.update(await self.engine.write(self.noise_store.purge, before))
        done["audit"] = await self.engine.write(AuditLog(self.store).purge, before)
        done["instances"] = await self.engine.write(self.store.forget_instances,
                                                    self.clock.now() - 86400)
        if any(done.values()):
            log.info("retention purge", extra=done)


def purge_every(retention: float) -> float:
    """How often rows past the retention are deleted: a quarter of it, between a minute
    and an hour (7 days: hourly; 10 minutes: every 150 s, so the store stops growing
    within about 1.25 times the retention)."""
    return min(PURGE_EVERY, max(60.0, retention / 4))


def _store_of(config: Config) -> tuple:
    return config.storage.url, config.storage_schema, config.beamline


def _slack_fixed(config: Config) -> object:
    """The part of `slack:` a reload cannot change: whether there is a bot, and how it
    connects (its roles are read at each request)."""
    if config.slack is None:
        return None
    return config.slack.model_copy(update={"roles": None})
