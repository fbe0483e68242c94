"""The in-memory twin of a source, for tests and replay: samples are pushed by hand."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..clock import Clock, SystemClock
from ..model import Sample, Severity
from .base import Sink


class SoftSource:
    def __init__(self, name: str = "soft", clock: Clock | None = None):
        self.name = name
        self.clock = clock or SystemClock()
        self.addresses: set[str] = set()
        self._sink: Sink | None = None

    async def start(self, sink: Sink) -> None:
        self._sink = sink

    def subscribe(self, addresses: Iterable[str]) -> None:
        self.addresses.update(addresses)

    def unsubscribe(self, addresses: Iterable[str]) -> None:
        self.addresses.difference_update(addresses)

    async def stop(self) -> None:
        self._sink = None

    def push(self, address: str, value: Any, *, severity: Severity = Severity.OK,
             connected: bool = True, server: str | None = "soft:0") -> Sample:
        now = self.clock.now()
        sample = Sample(address, value if connected else None, now, now, connected,
                        severity, 0, server, None if connected else "disconnected")
        if self._sink is not None and address in self.addresses:
            self._sink([sample])
        return sample
