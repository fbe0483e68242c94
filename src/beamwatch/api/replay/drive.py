"""Replay, part two: feed a reconstructed stream to a real App and see what it notifies.

A fresh `App` runs the (changed) config on a throw-away SQLite file, fed by a
`SoftSource` per source and driven by a `FakeClock`, from the stream's start to
its end. The real outbox worker runs, but every notifier is a dry one that only
says "sent" — nothing leaves the process. So fan-out (resolve/ack to those
told), cancelled repeats and escalations, repeat chains and group_wait behave
as live.

Time jumps from one event to the next (samples, acks, mode changes, silence and
maintenance edges, due outbox rows, `for:`, grace and stale deadlines, the
decider's held resolves) and goes second by second only while something is
settling (held incidents, flapping); muted pages are re-offered every 30 s and
nothing waits more than a minute for a tick.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...clock import FakeClock
from ...config.schema import INTERNAL_SOURCE, Config
from ...model import Severity
from ...model.modes import ModeChange
from ...notify.base import Delivery
from ...sources.soft import SoftSource
from ...store.outbox import Outbox
from .reconstruct import Event, Stream

FAR = 10 * 365 * 86400.0
IDLE = 60.0  # tick at least this often anyway (bounds the lateness of a timer not known here)
UNPAGED_EVERY = 30.0  # a muted page waiting for its mute to end is re-offered this often

Progress = Callable[[float, float], None]  # (seconds replayed, seconds in all)


@dataclass
class Driven:
    """What the replayed config did: its notifications (outbox rows, as stored) and the
    count of its transitions in [since, until] (acks aside)."""

    notifications: list[dict]
    transitions: int
    samples: int = 0
    ticks: int = 0
    notes: list[str] = field(default_factory=list)


async def drive(stream: Stream, tmp: Path, config_path: str | Path | None = None,
                progress: Progress | None = None) -> Driven:
    """Run `stream.config` over `stream` in a store under `tmp`."""
    run = _Run(stream, tmp, config_path, progress)
    try:
        await run.go()
        store = run.app.store
        notifications = Outbox(store).rows()
        transitions = sum(1 for lt in store.transitions(since=stream.since, until=stream.until)
                          if lt.transition.reason != "ack")
    finally:
        await run.close()
    return Driven(notifications, transitions, run.samples, run.ticks, run.notes)


class _DryNotifier:
    """Says "sent" and sends nothing."""

    kind = "replay"

    def __init__(self, name: str):
        self.name = self.destination = name

    async def send(self, message) -> Delivery:
        return Delivery.sent(detail="replay: not sent")

    async def aclose(self) -> None:
        pass


class DryRegistry:
    """The worker's registry in a replay: the real one's destinations, dry."""

    def __init__(self, real):
        self.real = real

    def get(self, name: str, default=None):
        return _DryNotifier(name) if name in self.real else default

    def person(self, name: str) -> list[_DryNotifier]:
        return [_DryNotifier(n.name) for n in self.real.person(name)]

    async def aclose(self) -> None:
        await self.real.aclose()


def _app(path: Path, clock: FakeClock, sources: dict, config: Config):
    """An App that runs this (changed) config instead of reading the file. Imported
    here: `beamwatch` loads this module for every command, the App only for a replay."""
    from ...app import App

    return App(path, clock, sources, config=config)


class _Run:
    def __init__(self, stream: Stream, tmp: Path, config_path: str | Path | None,
                 progress: Progress | None):
        self.stream = stream
        self.progress = progress
        self.clock = FakeClock(stream.start)
        self.samples = 0
        self.ticks = 0
        self.notes: list[str] = []
        self.app = None
        self._value: dict[str, Any] = {}
        self._severity: dict[str, Severity] = {}
        self._down: set[str] = set()
        self._due: float | None = None
        self._outbox_changed = False
        config = stream.config
        url = f"sqlite:///{tmp / 'replay.db'}"
        self.config = config.model_copy(update={"storage": config.storage.model_copy(
            update={"url": url, "password": None})})
        self.config_path = Path(config_path) if config_path else tmp / "replay.yaml"
        # every source a check reads (heartbeats, files, Alertmanager's alerts too) is a
        # soft one fed from the log; beamwatch's own health is the App's
        names = {c.input_source for c in config.checks} - {INTERNAL_SOURCE} | {"ca"}
        self.sources = {name: SoftSource(name, self.clock) for name in sorted(names)}

    async def go(self) -> None:
        self.app = app = _app(self.config_path, self.clock, self.sources, self.config)
        app.registry = app.worker.registry = DryRegistry(app.registry)
        committed = app.engine.on_committed

        def on_committed() -> None:
            self._outbox_changed = True
            if committed:
                committed()

        app.engine.on_committed = on_committed
        for rt in app.engine.runtimes.values():
            # "no value since start" only counts from the check's first data: before it
            # the log knows nothing (a check with no data at all never has an opinion)
            rt.input.started = self.stream.first.get(rt.address, float("inf"))
        await app.start()
        noise = app.decider.noise
        for s in self.stream.silences:
            noise.silences.put(s)
        await self._loop()

    async def close(self) -> None:
        if self.app is not None:
            await self.app.close()

    # -- the loop -----------------------------------------------------------------------------

    async def _loop(self) -> None:
        events, stream = self.stream.events, self.stream
        total = max(stream.until - stream.start, 1.0)
        i, now, shown = 0, stream.start, stream.start
        while True:
            self.clock.t = now
            batch = []
            while i < len(events) and events[i].time <= now:
                batch.append(events[i])
                i += 1
            self._apply(batch, now)
            await self._tick(now)
            if self.progress is not None and now - shown >= 300.0:
                shown = now
                self.progress(now - stream.start, total)
            if now >= stream.until:
                break
            nxt = events[i].time if i < len(events) else stream.until
            now = min(nxt, self._wake(now), stream.until)
        if self.progress is not None:
            self.progress(total, total)

    def _apply(self, batch: list[Event], now: float) -> None:
        engine = self.app.engine
        modes = self.app.decider.noise.modes
        for ev in batch:
            if ev.kind == "value":
                self._value[ev.address] = ev.data
                self._push(ev.address, ev.data)
            elif ev.kind == "severity":
                self._severity[ev.address] = ev.data
                if ev.address in self._value and ev.address not in self._down:
                    self._push(ev.address, self._value[ev.address])
            elif ev.kind == "down":
                self._down.add(ev.address)
                self._push(ev.address, None, connected=False)
            elif ev.kind == "up":
                if ev.address in self._down and ev.address in self._value:
                    self._push(ev.address, self._value[ev.address])
                self._down.discard(ev.address)
            elif ev.kind == "ack":
                check_id, actor = ev.data
                engine.acknowledge(check_id, actor)
            elif ev.kind == "mode":
                self._mode(modes, ev.data, now)

    def _push(self, address: str, value: Any, connected: bool = True) -> None:
        if connected:
            self._down.discard(address)
        server = self.stream.servers.get(address)
        for source in self.sources.values():
            if address in source.addresses:
                source.push(address, value, connected=connected, server=server,
                            severity=self._severity.get(address, Severity.OK))
                self.samples += 1

    def _mode(self, modes, change: ModeChange, now: float) -> None:
        if change.new not in modes.names:
            self.notes.append(f"mode '{change.new}' (logged at {change.time:.0f}) is not a "
                              "mode of this config; the mode was left as it was")
            return
        modes.set_override(change.new, author="replay", reason=f"logged: {change}",
                           now=now, until=now + FAR)

    async def _tick(self, now: float) -> None:
        app = self.app
        self.ticks += 1
        app.engine.tick()
        await app.engine.flush()
        if self._outbox_changed:
            self._outbox_changed = False
            self._due = await asyncio.to_thread(app.worker.outbox.next_due)
        while self._due is not None and self._due <= now:
            while await app.worker.run_once():
                await app.worker.drain()
            self._due = await asyncio.to_thread(app.worker.outbox.next_due)
            if self._due is not None and self._due <= now:
                break  # not claimable now (cannot happen with dry notifiers); go on
        if self.ticks % 600 == 0:
            app.engine.history.take(now)  # nobody reads the replay's own history

    def _wake(self, now: float) -> float:
        """The next time something may happen without a new event."""
        engine = self.app.engine
        decider = self.app.decider
        noise = decider.noise
        times = [now + IDLE]
        if self._due is not None:
            times.append(self._due)
        for rt in engine.runtimes.values():
            d = rt.logic.deadline
            if d is not None:
                times.append(d)
            inp, cfg = rt.input, rt.check.config
            if inp.sample is not None and not inp.sample.connected and \
                    inp.disconnected_since is not None:
                times.append(inp.disconnected_since + cfg.disconnect_grace)
            elif inp.sample is None:
                times.append(inp.started + cfg.disconnect_grace)
            if cfg.stale is not None and inp.last_update is not None:
                times.append(inp.last_update + cfg.stale + 1.0)
        tracker = noise.incidents
        if any(tracker.incident_of(c) is None for c in tracker.failing):
            times.append(now + 1.0)  # held or orphaned: settles within seconds
        if noise.flaps.flapping():
            times.append(now + 1.0)
        if getattr(decider, "unpaged", None):
            times.append(now + UNPAGED_EVERY)
        times += _decider_due(decider, now)
        later = [x for x in times if x > now and math.isfinite(x)]
        return min(later) if later else now + IDLE


def _decider_due(decider, now: float) -> list[float]:
    """When the decider's own timers fire: its `next_due(now)` if it has one (the hook
    proposed for this)."""
    due = getattr(decider, "next_due", None)
    if callable(due):
        at = due(now)
        return [] if at is None else [at]
    return []  # resolves wait in the outbox, whose next due time `_wake` already takes
