"""The one interface every source backend implements.

A source watches addresses (PV names, URLs, paths) and hands `Sample`s to a
sink in batches, on the asyncio loop's thread. Batching matters: a beamline of
10k PVs at 10 Hz is 100k updates/s, and one loop wake-up per update costs
more than the checks themselves.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from ..model import Sample

log = logging.getLogger("beamwatch.sources")

Sink = Callable[[list[Sample]], None]

HAND_OVER = 2_500  # kept samples a warm source hands to the engine per loop turn


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
        self._deliver(sink, batch)

    def _deliver(self, sink: Sink, batch: list[Sample]) -> None:
        self.batches += 1
        try:
            sink(batch)
        except Exception:
            log.exception("the sink failed on a batch", extra={"source": self.name,
                                                                "samples": len(batch)})


class Subscriptions(Batches):
    """Subscription sources (CA, PVA): one PV object per address (`_pv_class`), opened
    (`_open`) once the source has started and closed (`_close`) on unsubscribe/stop."""

    _pv_class: Callable[[str], Any]
    _pvs: dict[str, Any]
    _kept: dict[str, Sample] | None = None  # warmed up: each address's newest sample

    async def warm(self) -> None:
        """Connect now, before there is a sink (an HA standby): only each address's
        newest sample is kept, and `start` hands them over at once. A standby of 100k
        PVs then takes over without first connecting them (tens of seconds)."""
        if self._sink is None and getattr(getattr(self, "config", None), "warm_standby", True):
            self._kept = {}
            await self.start(self._keep)

    def _keep(self, batch: list[Sample]) -> None:
        kept = self._kept
        if kept is not None:
            for sample in batch:
                kept[sample.address] = sample

    async def _take_over(self, sink: Sink) -> bool:
        """For `start` of a warmed-up source: `sink` gets what was kept, then the rest as
        it comes; True when that was the case (the source is running already).

        What was kept goes over HAND_OVER samples at a time, yielding to the loop between
        (100k samples judged at once held the new leader's loop, and its first lease
        renewal, for a second). Meanwhile a new sample of a PV still waiting replaces
        the kept one (nothing older follows it), and any other goes straight on."""
        kept = self._kept
        if self._sink is None or self._sink != self._keep or kept is None:
            return False
        self._kept = None

        def handing_over(batch: list[Sample]) -> None:
            rest = []
            for sample in batch:
                if sample.address in kept:
                    kept[sample.address] = sample
                else:
                    rest.append(sample)
            if rest:
                sink(rest)

        self._sink = handing_over
        while kept and self._sink is handing_over:  # at most len(kept) / HAND_OVER turns
            chunk = list(itertools.islice(kept.items(), HAND_OVER))
            for address, _ in chunk:
                del kept[address]
            self._deliver(sink, [sample for _, sample in chunk])
            await asyncio.sleep(0)
        if self._sink is handing_over:  # not stopped meanwhile
            self._sink = sink
        return True

    def _open(self, pv: Any) -> None:
        raise NotImplementedError

    def _close(self, pv: Any) -> None:
        raise NotImplementedError

    def subscribe(self, addresses: Iterable[str]) -> None:
        """Watch more PVs. After start(), call it on the loop's thread."""
        for address in addresses:
            if address in self._pvs:
                continue
            pv = self._pvs[address] = self._pv_class(address)
            if self._sink is not None:
                self._open(pv)

    def unsubscribe(self, addresses: Iterable[str]) -> None:
        """Stop watching PVs; no sample of theirs is delivered after this returns."""
        removed = set()
        for address in addresses:
            pv = self._pvs.pop(address, None)
            if pv is not None:
                removed.add(address)
                self._close(pv)
        if removed and self._batch:
            self._batch[:] = [s for s in self._batch if s.address not in removed]

    def _close_all(self) -> None:
        """For stop(): every PV closed, nothing more for the sink."""
        self._sink = None
        for pv in self._pvs.values():
            self._close(pv)
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        self._batch = []
