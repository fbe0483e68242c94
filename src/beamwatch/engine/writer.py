"""The ordered, off-loop writer of decided batches: never lose one, never block on one.

Deciding runs on the loop as soon as transitions happen; storing runs here,
one batch at a time, in order, on the store's single writer thread. A batch
is a transaction (transitions, the states they led to, the notifications
they cause, incident snapshots): nothing is notified before it is stored.

- A **transient** failure (database away, locked, disk full) keeps the batch
  at the head of the queue and retries it with backoff; later batches wait
  behind it, so the log keeps its order.
- A **permanent** failure (the database refuses what the batch contains) is
  isolated: the batch is split into one piece per transition (with its
  notifications), one per other notification and one for the incident
  snapshots. A piece refused again is written once more with every text cut
  to its column and every value made JSON-safe; one refused even then is
  kept as text in the `quarantine` table, logged and counted. The writer goes
  on with the next batch either way.
- The queue is **bounded**: past `max_rows` unwritten transitions (a long
  outage under a chattering beamline) the oldest batches that notify nobody
  lose their transitions (counted in `dropped`, logged once per outage);
  anything that pages someone is always kept.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from ..model import AlarmState, Transition
from ..store import Store
from ..store.errors import describe, is_transient

log = logging.getLogger("beamwatch.engine")

Write = Callable[..., Awaitable[Any]]  # runs a store call on the writer thread


@dataclass
class Batch:
    rows: list[tuple[Transition, AlarmState]]
    notes: list[dict]
    also: Callable | None = None  # (conn) -> None: incident snapshots, same transaction
    piece: bool = False  # already split from a refused batch

    def pieces(self) -> list[Batch]:
        """One batch per transition (with its notifications), per other notification, and
        one for the incident snapshots: a refused part no longer takes the rest with it."""
        out = []
        for i, item in enumerate(self.rows):
            notes = [{**n, "transition_index": 0} for n in self.notes
                     if n.get("transition_index") == i]
            out.append(Batch([item], notes, piece=True))
        out += [Batch([], [n], piece=True) for n in self.notes
                if n.get("transition_index") is None]
        if self.also is not None:
            out.append(Batch([], [], self.also, piece=True))
        return out


@dataclass
class WriterStats:
    written: int = 0
    write_errors: int = 0
    quarantined: int = 0
    dropped: int = 0
    failing_since: float | None = None
    last_error: str | None = None
    last_ok: float | None = None
    retry_in: float = field(default=0.0)


class BatchWriter:
    RETRY_FIRST = 0.5
    RETRY_MAX = 5.0

    def __init__(self, store: Store, write: Write, now: Callable[[], float],
                 on_committed: Callable[[bool], None] | None = None,
                 max_rows: int = 200_000):
        self.store = store
        self._write = write
        self._now = now
        self.on_committed = on_committed  # (had notifications) -> None
        self.max_rows = max_rows
        self.queue: deque[Batch] = deque()
        self.stats = WriterStats()
        self._task: asyncio.Task | None = None
        self._lock = asyncio.Lock()  # one batch at a time: the log keeps its order

    # -- the engine's side --------------------------------------------------------------

    def put(self, batch: Batch) -> None:
        if not (batch.rows or batch.notes or batch.also):
            return
        self.queue.append(batch)
        self._bound()

    @property
    def unwritten(self) -> int:
        return sum(len(b.rows) for b in self.queue)

    async def drain(self, attempts: int = 1) -> bool:
        """Write what is queued now; True when all of it is stored. After `attempts`
        failed tries the rest is left to a background task that retries with backoff."""
        for attempt in range(attempts):
            while self.queue:
                if not await self._write_head():
                    break
            if not self.queue:
                return True
            if attempt + 1 < attempts:
                await asyncio.sleep(self.RETRY_FIRST)
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._run())
        return False

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    # -- the loop -----------------------------------------------------------------------

    async def _run(self) -> None:
        delay = self.RETRY_FIRST
        while self.queue:
            if await self._write_head():
                delay = self.RETRY_FIRST
                continue
            self.stats.retry_in = delay
            try:
                await asyncio.sleep(delay)
            finally:
                self.stats.retry_in = 0.0
            delay = min(self.RETRY_MAX, delay * 2)

    async def _write_head(self) -> bool:
        """Try the oldest batch; True when it is dealt with (stored, split or set aside)."""
        async with self._lock:
            if not self.queue:
                return True
            batch = self.queue[0]
            try:
                await self._write(self._record, batch)
            except Exception as e:  # noqa: BLE001 - every failure is classified below
                return await self._failed(batch, e)
            self.queue.popleft()
            self._ok(batch)
            return True

    def _record(self, batch: Batch) -> None:
        self.store.record(batch.rows, batch.notes, None, batch.also)

    def _ok(self, batch: Batch) -> None:
        if self.stats.failing_since is not None:
            log.warning("store writable again after %.0f s", self._now() - self.stats.failing_since)
        self.stats.failing_since = None
        self.stats.last_ok = self._now()
        self.stats.written += len(batch.rows)
        if self.on_committed is not None:
            self.on_committed(bool(batch.notes))

    async def _failed(self, batch: Batch, error: Exception) -> bool:
        self.stats.write_errors += 1
        self.stats.last_error = describe(error)
        if self.stats.failing_since is None:
            self.stats.failing_since = self._now()
        if is_transient(error):
            log.error("storing %d transitions failed, will retry: %s", len(batch.rows),
                      self.stats.last_error)
            return False
        self.queue.popleft()
        if not batch.piece:
            log.error("the store refused a batch of %d transitions (%s); storing its parts "
                      "one by one", len(batch.rows), self.stats.last_error)
            self.queue.extendleft(reversed(batch.pieces()))
            return True
        await self._second_chance(batch, error)
        return True

    async def _second_chance(self, batch: Batch, error: Exception) -> None:
        """A refused piece: once more cut to fit, else quarantined; never retried for ever."""
        if batch.also is None:
            try:
                await self._write(self.store.record_fitted, batch.rows, batch.notes)
                log.error("stored %s only after cutting it to fit: %s", _what(batch),
                          describe(error))
                self._ok(batch)
                return
            except Exception as e:  # noqa: BLE001
                if is_transient(e):  # the store went away meanwhile: try the piece again
                    self.queue.appendleft(batch)
                    return
                error = e
        if batch.rows and batch.notes:  # the transition is lost, not who it was to page
            notes = [{k: v for k, v in n.items() if k != "transition_index"}
                     for n in batch.notes]
            self.queue.appendleft(Batch([], notes, piece=True))
            batch = Batch(batch.rows, [], piece=True)
        self.stats.quarantined += 1
        detail = describe(error)
        log.error("quarantined %s: %s", _what(batch), detail)
        try:
            await self._write(self.store.quarantine, *_quarantine_args(batch, detail, self._now()))
        except Exception as e:  # noqa: BLE001 - the log line above is all that is left
            log.error("could not even quarantine %s: %s", _what(batch), describe(e))

    def _bound(self) -> None:
        excess = self.unwritten - self.max_rows
        if excess <= 0:
            return
        for batch in list(self.queue)[:-1]:  # never the newest
            if excess <= 0:
                break
            if batch.rows and not batch.notes:
                excess -= len(batch.rows)
                self.stats.dropped += len(batch.rows)
                batch.rows = []
        if self.stats.dropped:
            log.error("store unwritable: %d unwritten transitions dropped so far (those that "
                      "notify anyone are kept)", self.stats.dropped)
        self.queue = deque(b for b in self.queue if b.rows or b.notes or b.also)


def _what(batch: Batch) -> str:
    if batch.rows:
        return f"the transition of {batch.rows[0][0].check_id}"
    if batch.notes:
        n = batch.notes[0]
        return f"a {n.get('kind')} notification to {n.get('receiver')}"
    return "incident snapshots"


def _quarantine_args(batch: Batch, detail: str, now: float) -> tuple:
    if batch.rows:
        tr, _ = batch.rows[0]
        payload = {"transition": asdict(tr), "notifications": batch.notes}
        return "transition", tr.check_id, detail, payload, now
    if batch.notes:
        n = batch.notes[0]
        return "notification", n.get("check_id"), detail, n, now
    return "incidents", None, detail, {"note": "incident snapshots of one decision"}, now
