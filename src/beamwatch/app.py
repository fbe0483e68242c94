"""The composition root: config -> store, sources, engine, outbox; run, reload, stop."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
from collections.abc import Callable
from pathlib import Path

from .clock import Clock, SystemClock
from .config import Config, ConfigError, load_config
from .engine.engine import Decider, Engine
from .sources.base import Source
from .store import Store

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
                 sources: dict[str, Source] | None = None,
                 decider_factory: Callable[[Config, Store], Decider] | None = None):
        self.config_path = Path(config_path)
        self.clock = clock or SystemClock()
        self.config = load_config(self.config_path)
        self.store = Store(self.config.storage.url)
        self.sources = sources if sources is not None else build_sources(self.config)
        self.decider_factory = decider_factory
        self.engine = Engine(
            self.config, self.sources, self.store, self.clock,
            decider=decider_factory(self.config, self.store) if decider_factory else None,
        )
        self.started = self.clock.now()
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task] = []

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig, handler in ((signal.SIGTERM, self.stop), (signal.SIGINT, self.stop),
                             (signal.SIGHUP, self.reload)):
            try:
                loop.add_signal_handler(sig, handler)
            except (NotImplementedError, RuntimeError):  # not the main thread (tests)
                pass
        await self.engine.start()
        self._tasks = [asyncio.create_task(self._every(TICK, self._tick)),
                       asyncio.create_task(self._every(VALUES_EVERY, self.engine.flush_values)),
                       asyncio.create_task(self._every(BEAT_EVERY, self._beat)),
                       asyncio.create_task(self._every(PURGE_EVERY, self._purge))]
        log.info("running", extra={"checks": len(self.config.checks),
                                   "beamline": self.config.beamline})
        await self._beat()
        await self._stop.wait()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.engine.stop()
        self.store.close()

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
        report = self.engine.reload(config)
        self.config = config
        if self.decider_factory:
            self.engine.decider = self.decider_factory(config, self.store)
        log.warning("config reloaded: %s", {k: len(v) for k, v in report.items()})

    async def _every(self, period: float, fn: Callable) -> None:
        while True:
            await asyncio.sleep(period)
            try:
                result = fn()
                if asyncio.iscoroutine(result):
                    await result
            except Exception:
                log.exception("periodic task %s failed", getattr(fn, "__name__", fn))

    async def _tick(self) -> None:
        self.engine.tick()
        await self.apply_commands()

    async def apply_commands(self) -> None:
        """Commands queued by the CLI (and later the web and Slack) for this engine."""
        commands = await self.engine.write(self.store.queued_commands)
        for cmd in commands:
            status, result = self._apply(cmd)
            await self.engine.flush()
            await self.engine.write(self.store.finish_command, cmd.id, status, result,
                                    self.clock.now())

    def _apply(self, cmd) -> tuple[str, str]:
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
        if any(done.values()):
            log.info("retention purge", extra=done)
