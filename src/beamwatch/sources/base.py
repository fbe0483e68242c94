"""The one interface every source backend implements.

A source watches addresses (PV names, URLs, paths) and hands `Sample`s to a
sink in batches, on the asyncio loop's thread. Batching matters: a beamline of
10k PVs at 10 Hz is 100k updates/s, and one loop wake-up per update costs
more than the checks themselves.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from typing import Protocol

from ..model import Sample

log = logging.getLogger("beamwatch.sources")

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


class Batches:
    """The sink side of a subscription source (CA, PVA): samples that arrive during one
    loop iteration go to the sink as one batch, at the end of it (`call_soon`), or at
    once when a burst reaches the subclass's own limit. The subclass owns `_batch`,
    `_sink`, `_flush_handle` and `batches` (set in its __init__) and appends."""

    name: str
    _batch: list[Sample]
    _sink: Sink | None
    _flush_handle: asyncio.Handle | None
    batches: int

    def _scheduled_flush(self) -> None:
        self._flush_handle = None
        self._flush()

    def _flush(self) -> None:
        batch, self._batch = self._batch, []
        sink = self._sink
        if sink is None or not batch:
            return
        self.batches += 1
        try:
            sink(batch)
        except Exception:
            log.exception("the sink failed on a batch", extra={"source": self.name,
                                                                "samples": len(batch)})
