"""The one interface every source backend implements.

A source watches addresses (PV names, URLs, paths) and hands `Sample`s to a
sink in batches, on the asyncio loop's thread. Batching matters: a beamline of
10k PVs at 10 Hz is 100k updates/s, and one loop wake-up per update costs
more than the checks themselves.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Protocol

from ..model import Sample

Sink = Callable[[list[Sample]], None]


class Source(Protocol):
    """Built by `App` with `Class.from_config(name, config, clock)`; a source whose
    checks carry settings (HTTP, SQL, files) also has `reconfigure(config)`, called on
    a reload before addresses are (un)subscribed."""

    name: str

    async def start(self, sink: Sink) -> None:
        """Begin delivering samples of subscribed addresses to `sink`."""

    def subscribe(self, addresses: Iterable[str]) -> None:
        """Watch more addresses; allowed before and after start()."""

    def unsubscribe(self, addresses: Iterable[str]) -> None:
        """Stop watching addresses (config reload)."""

    async def stop(self) -> None:
        """Release every connection; no sample is delivered after this returns."""


class SourceUnavailable(RuntimeError):
    """A backend cannot run here (missing library, bad address list)."""
