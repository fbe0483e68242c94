"""The composition root: config -> store, sources, engine, outbox; run, reload, stop."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import socket
from collections.abc import Callable
from pathlib import Path

from .api import service
from .clock import Clock, SystemClock
from .config import Config, ConfigError, load_config
from .engine.engine import Engine
from .engine.noise import Noise
from .health import SelfMonitor
from .model import Severity
from .notify.base import Message
from .notify.registry import NotifyConfigError, build_registry
from .notify.worker import OutboxWorker
from .paging.decide import Decider
from .paging.mode_notes import ModeNotes
from .routing.calendars import CalendarFeeds
from .routing.oncall import OnCallResolver
from .routing.router import Router
from .sources.base import Source
from .store import Store
from .store.errors import describe, is_transient
from .store.noise import NoiseStore

log = logging.getLogger("beamwatch")

TICK = 1.0  # seconds: delays, staleness and commands are handled at this granularity
VALUES_EVERY = 2.0  # latest values for `status`
BEAT_EVERY = 5.0
PURGE_EVERY = 3600.0


def build_sources(config: Config) -> dict[str, Source]:
    """One source object per named source that some check uses."""
    from .sources.ca import CaSource  # libca is loaded only when a CA source is needed

    used = {c.source or "ca" for c in config.checks if c.pv}
    if config.modes.from_pv:
        used.add("ca")
    sources: dict[str, Source] = {}
    for name in sorted(used):
        sources[name] = CaSource(name, config.sources.get(name))
    return sources


class App:
    """`beamwatch run`: everything that runs in one process, wired together."""

    def __init__(self, config_path: str | Path, clock: Clock | None = None,
                 sources: dict[str, Source] | None = None, config: Config | None = None):
        """`config`: already loaded (replay runs a changed copy); else read from the file."""
        self.config_path = Path(config_path)
        self.clock = clock or SystemClock()
        self.config = config if config is not None else load_config(self.config_path)
        self.store = Store(self.config.storage.url)
        self.sources = dict(sources) if sources is not None else build_sources(self.config)
        self.engine = Engine(self.config, self.sources, self.store, self.clock)
        self.calendars = CalendarFeeds(self.config, self.config_path.parent, self.clock)
        self.engine.decider = self._decider(self.config)
        self.registry = build_registry(self.config)
        self.worker = OutboxWorker(self.config, self.store, self.registry, self.clock)
        self.noise_store = NoiseStore(self.store)
        self.mode_notes = ModeNotes()  # mode changes, announced (routes with kind: mode)
        self.engine.save_incidents = self.noise_store.save_incidents
        self.engine.on_committed = self.worker.wake
        self.monitor = SelfMonitor(self.config, self.engine, self.clock)  # beamwatch.* checks
        self.sources.setdefault(self.monitor.source.name, self.monitor.source)
        self.started = self.clock.now()
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task] = []
        self._side: dict[str, asyncio.Task] = {}  # store reads beside the tick
        self._side_failing: set[str] = set()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig, handler in ((signal.SIGTERM, self.stop), (signal.SIGINT, self.stop),
                             (signal.SIGHUP, self.reload)):
            try:
                loop.add_signal_handler(sig, handler)
            except (NotImplementedError, RuntimeError):  # not the main thread (tests)
                pass
        await self.start()
        # Samples live for one batch but long enough to be promoted: with the default
        # thresholds the collector rescans them all the time (measured: 0.67 of raw
        # aioca throughput; 0.9 with these). Startup objects are frozen out of it.
        gc.collect()
        gc.freeze()
        gc.set_threshold(50_000, 20, 100)
        self._tasks = [asyncio.create_task(self._every(TICK, self._tick)),
                       asyncio.create_task(self.worker.run(self._stop)),
                       asyncio.create_task(self._every(VALUES_EVERY, self.engine.flush_values)),
                       asyncio.create_task(self._every(BEAT_EVERY, self._beat)),
                       asyncio.create_task(self._every(PURGE_EVERY, self._purge)),
                       asyncio.create_task(self.calendars.run(self._stop)),  # off the loop
                       *self.monitor.tasks()]
        log.info("running", extra={"checks": len(self.config.checks),
                                   "beamline": self.config.beamline})
        await self._beat()
        await self._stop.wait()
        tasks = self._tasks + list(self._side.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.close()

    async def start(self) -> None:
        """Take back what was going on before a restart, then subscribe every source."""
        now = self.clock.now()
        incidents = await self.engine.write(self.noise_store.open_incidents)
        last = await self.engine.write(self.store.last_incidents)
        ids = sorted({i.id for i in incidents} | set(last.values()))
        paged = await self.engine.write(self.worker.outbox.paged, ids)
        self.engine.queue_rows(self.engine.decider.restore(incidents, paged, now, last))
        await self.engine.write(self.mode_notes.resume, self.store)  # no re-announcing
        await self.sync_noise()
        await self.apply_commands()  # queued while no engine ran: on the state people saw
        await self.engine.start()
        await self.engine.flush()

    async def sync_noise(self) -> None:
        """Silences and the mode override live in the store (any front end writes them);
        mirror them into the mute stages, and store what the engine decided: mode
        changes and incident snapshots."""
        now = self.clock.now()
        noise = self.engine.decider.noise
        # reads run beside the writer thread, not behind a write that waits on a lock
        silences = await asyncio.to_thread(self.noise_store.silences, now - 86400)
        for silence in silences:
            noise.silences.put(silence)
        self.engine.queue_rows(self._reminders(noise.silences.due_reminders(now), now))
        override = await asyncio.to_thread(self.noise_store.active_override, now)
        records = self._apply_override(noise.modes, override, now) + noise.modes.tick(now)
        if records:
            for r in records:
                log.warning("beamline mode: %s", r)
            self._announce(records, now)
            await self.engine.write(self.noise_store.log_mode_changes, records)

    def _announce(self, records: list, now: float) -> None:
        """Mode changes become outbox rows in the engine's next batch (stored, then sent)."""
        d = self.engine.decider
        self.engine.queue_rows(self.mode_notes.rows(records, d.router, self.config,
                                                    d.noise.modes, now))

    def _reminders(self, reminders, now: float) -> list[dict]:
        """Tell a silence's author (when a configured person) that it is about to end;
        one row per (silence, end): the dedup key makes it once, across restarts."""
        rows = []
        for r in reminders:
            if r.author not in self.config.people:
                continue
            names = [n.name for n in self.registry.person(r.author)]
            if not names:
                continue
            message = Message(kind="reminder", beamline=self.config.beamline,
                              title=f"silence {r.silence_id} ends soon", severity=Severity.OK,
                              text=r.text, time=now, timezone=self.config.timezone)
            rows.append({"dedup_key": r.key, "kind": "reminder",
                         "receiver": f"person:{r.author}", "destination": names[0],
                         "route": "author of the silence", "created_at": now,
                         "message": {**message.to_dict(), "fallbacks": names[1:]},
                         "expires_at": r.end})
        return rows

    @staticmethod
    def _apply_override(modes, override, now: float) -> list:
        current = modes.override
        if override is None:
            if current is not None and current.until > now:
                return modes.clear_override(author=current.author, now=now,
                                            reason="override cleared")
            return []
        same = current is not None and (current.mode, current.author, current.reason,
                                        current.until) == (override.mode, override.author,
                                                           override.reason, override.until)
        if same:
            return []
        return modes.set_override(override.mode, author=override.author,
                                  reason=override.reason, now=now, until=override.until)

    async def step(self) -> None:
        """One tick and everything it leads to, delivered: what `run` does each second,
        callable by hand with a fake clock (the acceptance tests drive time this way)."""
        self.monitor.poll()
        await self.sync_noise()
        self._tick_engine()
        await self.apply_commands()
        await self.engine.flush()
        while await self.worker.run_once():
            await self.worker.drain()
        await self.worker.drain()

    async def close(self) -> None:
        await self.engine.stop()
        await self.monitor.aclose()
        await self.registry.aclose()
        self.store.close()

    def _decider(self, config: Config, previous: Decider | None = None) -> Decider:
        """Routing, on-call (with calendars) and the noise stages for one config. On a
        reload the running noise state (incidents, mode, silences) carries over."""
        feeds = self.calendars.configure(config, self.config_path.parent)  # read in the background
        router = Router(config, OnCallResolver(config, feeds=feeds))
        noise = Noise.from_config(config, self.clock.now(), getattr(previous, "noise", None),
                                  same_modes=config.modes == self.config.modes)
        decider = Decider(config, router, noise, sample_of=self.engine.sample_of,
                          state_of=self.engine.state_of)
        if previous is not None:
            decider.paged, decider.unpaged = previous.paged, previous.unpaged
            decider.last_incident = previous.last_incident
        self.engine.on_mode_sample = self._on_mode_sample
        self.engine.mode_of = noise.modes.mode
        return decider

    def _on_mode_sample(self, sample) -> None:
        records = self.engine.decider.noise.modes.on_pv(sample.value, self.clock.now(),
                                                        sample.connected)
        for record in records:
            log.warning("beamline mode: %s", record)
        if records:
            self._announce(records, self.clock.now())
            asyncio.ensure_future(self.engine.write(self.noise_store.log_mode_changes, records))

    def stop(self) -> None:
        self._stop.set()

    def reload(self) -> None:
        """SIGHUP: load the file again; a bad file is reported and the old config kept."""
        try:
            config = load_config(self.config_path)
        except ConfigError as e:
            log.error("reload refused, keeping the running config:\n%s", e)
            return
        if config.storage.url != self.config.storage.url:
            log.error("reload refused: storage.url cannot change while running")
            return
        try:
            registry = build_registry(config)
        except NotifyConfigError as e:
            log.error("reload refused, keeping the running config: %s", e)
            return
        try:  # everything that can refuse the new config, before anything changes
            decider = self._decider(config, previous=self.engine.decider)
        except Exception as e:
            log.error("reload refused, keeping the running config: %s", e)
            asyncio.ensure_future(registry.aclose())
            return
        report = self.engine.reload(config)
        self.engine.decider = decider
        self.config = config
        old_registry = self.registry
        self.registry = registry
        self.worker.reconfigure(config, registry)
        self.monitor.reconfigure(config)
        asyncio.ensure_future(old_registry.aclose())
        log.warning("config reloaded: %s", {k: len(v) for k, v in report.items()})

    async def _every(self, period: float, fn: Callable) -> None:
        failing = False
        while True:
            await asyncio.sleep(period)
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
        """Commands queued by the CLI (and later the web and Slack) for this engine."""
        commands = await asyncio.to_thread(self.store.queued_commands)
        for cmd in commands:
            status, result = self._apply(cmd)
            await self.engine.flush()
            await self.engine.write(self.store.finish_command, cmd.id, status, result,
                                    self.clock.now())

    def _apply(self, cmd) -> tuple[str, str]:
        if expired := service.expired_command(cmd, self.clock.now()):
            log.warning("command %d not applied: %s", cmd.id, expired)
            return "expired", expired
        if cmd.verb == "ack":
            check_id = cmd.args.get("check_id", "")
            try:
                done = self.engine.acknowledge(check_id, cmd.actor)
            except KeyError:
                return "failed", f"unknown check '{check_id}'"
            return "done", (f"acknowledged {check_id}" if done else
                            f"{check_id} has nothing to acknowledge")
        return "failed", f"unknown command '{cmd.verb}'"

    async def _beat(self) -> None:
        await self.engine.write(self.store.beat, "engine", os.getpid(), socket.gethostname(),
                                self.started, self.clock.now(), str(self.config_path))

    async def _purge(self) -> None:
        before = self.clock.now() - self.config.storage.retention
        done = await self.engine.write(self.store.purge, before)
        done.update(await self.engine.write(self.noise_store.purge, before))
        if any(done.values()):
            log.info("retention purge", extra=done)
