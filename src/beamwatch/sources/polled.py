"""The shared machinery of sources that ask rather than listen: HTTP, SQL, files.

A polled source runs one small task per check (its address is the check id):
every `every:` seconds it asks `read(check)` for a value, under the check's
`timeout:`, and hands the engine a Sample. A read that fails or times out is a
Sample with `connected=False` and the reason in `error`, so the check's
`disconnect_grace`, `stale:` and `for:` apply as they do to a PV. One slow or
dead server delays only its own checks: every poll is its own task, and
blocking work (a database driver, a directory scan) runs in a worker thread.

Subclasses implement `read(check) -> Reading` (async) and may override
`open()`/`close()` for connection pools.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ..clock import Clock, SystemClock
from ..config.schema import CheckConfig, Config
from ..model import Sample, Severity
from .base import Sink

log = logging.getLogger("beamwatch.sources")


@dataclass(frozen=True, slots=True)
class Reading:
    """What one poll found: the value, the time it is of (default: now), and the
    place it came from (a URL, a path) for messages."""

    value: Any
    timestamp: float | None = None
    server: str | None = None


class ReadError(Exception):
    """A poll that found no value, with the reason people will read (no traceback)."""


class PolledSource:
    kind = "polled"
    default_timeout = 10.0

    def __init__(self, name: str, config: Config, clock: Clock | None = None):
        self.name = name
        self.clock = clock or SystemClock()
        self.checks: dict[str, CheckConfig] = {}
        self.addresses: set[str] = set()
        self._tasks: dict[str, asyncio.Task] = {}
        self._sink: Sink | None = None
        self.reconfigure(config)

    @classmethod
    def from_config(cls, name: str, config: Config, clock: Clock | None = None):
        return cls(name, config, clock)

    # -- the Source protocol -------------------------------------------------------------

    def reconfigure(self, config: Config) -> None:
        """A (re)loaded config: the checks this source serves, by id. A check whose
        settings changed is polled with the new ones from its next poll on."""
        self.config = config
        self.checks = {c.id: c for c in config.checks if c.input_source == self.name}
        for address in list(self._tasks):
            if address not in self.checks:
                self._cancel(address)

    def subscribe(self, addresses: Iterable[str]) -> None:
        for address in addresses:
            self.addresses.add(address)
            if self._sink is not None:
                self._launch(address)

    def unsubscribe(self, addresses: Iterable[str]) -> None:
        for address in addresses:
            self.addresses.discard(address)
            self._cancel(address)

    async def start(self, sink: Sink) -> None:
        self._sink = sink
        await self.open()
        for address in sorted(self.addresses):
            self._launch(address)

    async def stop(self) -> None:
        self._sink = None
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()
        await self.close()

    # -- for subclasses ------------------------------------------------------------------

    async def open(self) -> None:
        """Before the first poll (a connection pool, a client)."""

    async def close(self) -> None:
        """After the last poll."""

    async def read(self, check: CheckConfig) -> Reading:
        raise NotImplementedError

    def timeout_of(self, check: CheckConfig) -> float:
        return check.timeout if check.timeout is not None else self.default_timeout

    # -- polling -------------------------------------------------------------------------

    def _launch(self, address: str) -> None:
        if address in self._tasks or address not in self.checks:
            return
        self._tasks[address] = asyncio.ensure_future(self._poll_forever(address))

    def _cancel(self, address: str) -> None:
        task = self._tasks.pop(address, None)
        if task is not None:
            task.cancel()

    async def _poll_forever(self, address: str) -> None:
        # spread the first polls of many checks over their period, not all at once
        await asyncio.sleep(random.uniform(0, min(1.0, self.checks[address].poll_every)))
        while self._sink is not None:
            check = self.checks.get(address)
            if check is None:
                return
            self._emit(await self.poll(check))
            await asyncio.sleep(check.poll_every)

    async def poll(self, check: CheckConfig) -> Sample:
        """One poll of one check, never raising: a value, or a disconnected Sample
        saying why there is none."""
        now = self.clock.now()
        try:
            # asyncio.timeout, not wait_for: on 3.11 wait_for swallows a cancel that
            # races with the read finishing, and stop() then waited for ever
            async with asyncio.timeout(self.timeout_of(check)):
                reading = await self.read(check)
        except TimeoutError:
            return self._failed(check, now, f"no answer within {self.timeout_of(check):g} s")
        except ReadError as e:
            return self._failed(check, now, str(e))
        except asyncio.CancelledError:
            raise
        except Exception as e:  # a bug or an odd driver error: that check only
            log.warning("polling %s failed: %s: %s", check.id, type(e).__name__, e)
            return self._failed(check, now, f"{type(e).__name__}: {e}"[:300])
        ts = reading.timestamp if reading.timestamp is not None else now
        return Sample(check.id, reading.value, ts, self.clock.now(), True, Severity.OK, 0,
                      reading.server)

    def _failed(self, check: CheckConfig, now: float, why: str) -> Sample:
        return Sample(check.id, None, now, self.clock.now(), False, Severity.INVALID, 0,
                      None, why)

    def _emit(self, sample: Sample) -> None:
        if self._sink is not None and sample.address in self.addresses:
            self._sink([sample])
