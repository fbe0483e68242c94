"""The source of the `beamwatch.*` checks: beamwatch's own health, one Sample per metric.

It has nothing to connect to. `poll()` reads the `Health` (cheap, in memory, on the
loop) and hands the engine one batch with a sample per subscribed metric; the
self-monitor calls it each second in `beamwatch run`, and `App.step` once per step
so fake-clock tests see the same checks.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..clock import Clock
from ..config.schema import INTERNAL_SOURCE
from ..model import Sample
from .base import Sink

if TYPE_CHECKING:
    from ..health import Health


@dataclass(frozen=True, slots=True)
class InternalSample(Sample):
    """A Sample that explains its value ("store failing for 42 s: …"): the check's
    verdict carries the note, so status and the page say what is wrong."""

    note: str | None = None


class InternalSource:
    def __init__(self, health: Health, clock: Clock, sink: Sink | None = None):
        self.name = INTERNAL_SOURCE
        self.health = health
        self.clock = clock
        self.addresses: set[str] = set()
        self._sink = sink

    async def start(self, sink: Sink) -> None:
        self._sink = sink

    def subscribe(self, addresses: Iterable[str]) -> None:
        self.addresses.update(addresses)

    def unsubscribe(self, addresses: Iterable[str]) -> None:
        self.addresses.difference_update(addresses)

    async def stop(self) -> None:
        self._sink = None

    def poll(self) -> list[Sample]:
        """One sample per subscribed metric, now, handed to the engine."""
        if self._sink is None or not self.addresses:
            return []
        now = self.clock.now()
        readings = self.health.read(now)
        batch: list[Sample] = []
        for metric in sorted(self.addresses):
            reading = readings.get(metric)
            if reading is not None:
                batch.append(InternalSample(metric, reading.value, now, now, note=reading.note))
        self._sink(batch)
        return batch
