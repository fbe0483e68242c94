"""The outbox worker: claims decided notifications and delivers them, durably.

For each claimed row, in this order of concern:
- a fan-out row (ack/resolve to "told:INCIDENT") becomes one row per receiver
  that was actually sent the alarm, so only those told hear the end of it;
- a repeat or escalation whose root is acknowledged or OK again is cancelled
  (with the reason stored); a repeat that is sent schedules the next one;
- alarm rows for one receiver that are due together go out as ONE message
  (group_wait is when they become due);
- rows past their expiry are not sent late one by one: they are folded into
  one summary per receiver;
- a failure is retried with exponential backoff and jitter, or after the
  server's Retry-After; a permanent failure is recorded with its reason; a
  person's channel failing for longer than `fallback_after` (or failing
  permanently) hands the message to that person's next channel.
Every attempt and its outcome is a row in `attempts`.

At-least-once, by design: a crash between a successful send and the store
write of its outcome resends that one message on restart (its lease expires).
Every message carries its outbox id and dedup key (webhook body, email
headers) so a receiver can drop the duplicate; everything else is exactly once.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import replace

from ..clock import Clock, SystemClock
from ..config.schema import Config
from ..engine.decide import HELD, TOLD
from ..model import Severity
from ..routing.router import Router
from ..store import Store
from ..store.outbox import Outbox, Outgoing
from .base import Delivery, ErrorKind, Message, Related
from .registry import Registry, people_channel

log = logging.getLogger("beamwatch.notify")

MAX_IN_FLIGHT = 64  # deliveries at once; rows beyond wait in the outbox, claimed later
BACKOFF_FIRST = 2.0
BACKOFF_MAX = 300.0
DEFAULT_FALLBACK_AFTER = 300.0
FOLLOW_UPS = ("repeat", "escalation")


def backoff(attempts: int, rng: Callable[[], float] = random.random) -> float:
    """2 s, 4 s, 8 s … capped at 5 min, with ±50 % jitter so retries of many rows spread."""
    base = min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** max(0, attempts))
    return base * (0.5 + rng())


class OutboxWorker:
    def __init__(self, config: Config, store: Store, registry: Registry,
                 clock: Clock | None = None, name: str = "worker-1", batch: int = 50):
        self.config = config
        self.store = store
        self.registry = registry
        self.clock = clock or SystemClock()
        self.outbox = Outbox(store, worker=name)
        self.batch = batch
        self._wake = asyncio.Event()
        # deliveries run as their own tasks: a slow channel never holds up the others
        self._inflight: set[asyncio.Task] = set()
        self.router = Router(config)
        self._check_ids = set(config.check_ids)
        self.sent = 0
        self.failed = 0

    def reconfigure(self, config: Config, registry: Registry) -> None:
        """A reloaded config: new destinations and routes for rows not yet sent."""
        self.config, self.registry = config, registry
        self.router = Router(config)
        self._check_ids = set(config.check_ids)

    def wake(self) -> None:
        """Called when new rows are committed: deliver now, not at the next poll."""
        self._wake.set()

    async def run(self, stop: asyncio.Event, poll: float = 1.0) -> None:
        while not stop.is_set():
            # cleared BEFORE looking: a wake-up that comes while we look is not lost
            self._wake.clear()
            try:
                busy = await self.run_once()
            except Exception:
                log.exception("outbox worker round failed; retrying")
                busy = False
            if busy:
                if len(self._inflight) >= MAX_IN_FLIGHT:
                    await asyncio.wait(self._inflight, return_when=asyncio.FIRST_COMPLETED)
                continue
            waiter = asyncio.ensure_future(self._wake.wait())
            stopper = asyncio.ensure_future(stop.wait())
            await asyncio.wait({waiter, stopper}, timeout=poll,
                               return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
            stopper.cancel()
        await self.drain()

    async def run_once(self) -> bool:
        """Claim and handle one batch; True if there was anything to do."""
        now = self.clock.now()
        rows = await asyncio.to_thread(self.outbox.claim, now, self.batch)
        if not rows:
            return False
        sends: dict[tuple[str, str], list[Outgoing]] = defaultdict(list)
        expired: dict[tuple[str, str], list[Outgoing]] = defaultdict(list)
        for row in rows:
            if row.receiver.startswith(TOLD):
                await asyncio.to_thread(self._expand, row, now)
            elif (row.kind in FOLLOW_UPS or row.dedup_key.endswith(HELD)) and (
                    why := self._over(row)):  # a page held by quiet hours: still news?
                await asyncio.to_thread(self.outbox.finish, [row.id], now, status="cancelled",
                                        detail=why, count_attempt=False)
            elif row.expires_at is not None and now > row.expires_at:
                expired[(row.receiver, row.destination)].append(row)
            elif row.kind == "alarm":
                sends[(row.receiver, row.destination)].append(row)
            else:
                sends[(row.receiver, row.destination, row.id)].append(row)
        for group in expired.values():
            await asyncio.to_thread(self._fold, group, now)
        for group in sends.values():
            task = asyncio.ensure_future(self._deliver(group))
            self._inflight.add(task)
            task.add_done_callback(self._inflight.discard)
        return True

    async def drain(self) -> None:
        """Wait for every delivery in flight (tests, and a clean stop)."""
        while self._inflight:
            await asyncio.gather(*list(self._inflight), return_exceptions=True)

    # -- fan-out, follow-ups, folding -------------------------------------------------------

    def _expand(self, row: Outgoing, now: float) -> None:
        """ack/resolve: one row per (receiver, destination) that was sent this incident."""
        told = self.outbox.told(row.incident_id or "")
        rows = [{
            "dedup_key": f"{row.dedup_key}/{receiver}/{dest}", "check_id": row.check_id,
            "incident_id": row.incident_id, "kind": row.kind, "receiver": receiver,
            "destination": dest, "route": "told about it", "message": row.message,
            "created_at": now, "transition_id": row.transition_id,
        } for receiver, dest, route in told if self._wants(row, route)]
        with self.store.engine.begin() as conn:
            self.outbox.queue(rows, conn)
        self.outbox.finish([row.id], now, status="expanded", ok=True, count_attempt=False,
                           detail=f"to {len(rows)} receiver(s) told about it")

    def _wants(self, row: Outgoing, route: str | None) -> bool:
        """A resolve goes to those told, unless every route that told them says
        `send_resolved: false` (escalation levels count as their route)."""
        if row.kind != "resolve" or not route:
            return True
        indexes = {int(i) for i in re.findall(r"routes\[(\d+)\]", route)}
        routes = [self.config.routes[i] for i in indexes if i < len(self.config.routes)]
        return not routes or any(r.send_resolved for r in routes)

    def _over(self, row: Outgoing) -> str | None:
        """Why a repeat/escalation is no longer needed, or None."""
        state = self.store.state(row.check_id or "")
        if state is None or state.severity == Severity.OK:
            return "cancelled: the alarm is over"
        if state.acked:
            return f"cancelled: acknowledged by {state.acked_by}"
        return None

    def _fold(self, group: list[Outgoing], now: float) -> None:
        """Too old to be news one by one: ONE summary for the receiver instead, taking
        with it everything else still waiting for that receiver (earlier summaries too)."""
        first = group[0]
        group = group + self.outbox.take_pending(first.receiver, first.destination, now)
        alarms: list[Related] = []
        for o in group:
            if o.kind == "summary":
                alarms += [Related.from_dict(a) for a in o.message.get("alarms", [])]
            else:
                alarms.append(Related(o.check_id or "", o.message.get("title", o.check_id or ""),
                                      o.message.get("severity", "MAJOR"),
                                      o.message.get("value", "")))
        message = Message(kind="summary", beamline=self.config.beamline,
                          title=f"{len(group)} notification(s) could not be delivered in time",
                          severity=max(Severity.parse(a.severity) for a in alarms),
                          check_ids=tuple(dict.fromkeys(a.check_id for a in alarms)),
                          text="They were held while the channel failed; this summary "
                               "replaces them.", time=now, alarms=tuple(alarms),
                          timezone=self.config.timezone)
        ids = sorted(o.id for o in group)
        with self.store.engine.begin() as conn:
            self.outbox.queue([{
                "dedup_key": f"summary/{first.receiver}/{first.destination}/{ids[0]}-{ids[-1]}",
                "kind": "summary", "receiver": first.receiver, "destination": first.destination,
                "message": message.to_dict(), "created_at": now, "route": "expired, folded",
            }], conn)
        self.outbox.finish(ids, now, status="folded", count_attempt=False,
                           detail=f"expired; folded into one summary of {len(ids)}")

    # -- delivery ------------------------------------------------------------------------------

    async def _deliver(self, group: list[Outgoing]) -> None:
        first = group[0]
        now = self.clock.now()
        ids = [o.id for o in group]
        notifier = self.registry.get(first.destination)
        if notifier is None:
            await asyncio.to_thread(self.outbox.finish, ids, now, status="failed",
                                    detail=f"no destination '{first.destination}' in the config")
            return
        message = await asyncio.to_thread(self._message, group)
        started = time.monotonic()
        try:
            delivery = await notifier.send(message)
        except Exception as e:  # a notifier bug must not stop the worker
            log.exception("notifier %s raised", first.destination)
            delivery = Delivery.failed(ErrorKind.INTERNAL, f"internal error: {type(e).__name__}")
        duration = time.monotonic() - started
        await asyncio.to_thread(self._record, group, delivery, duration)

    def _message(self, group: list[Outgoing]) -> Message:
        first = group[0]
        msg = Message.from_dict(first.message)
        msg = replace(msg, id=str(first.id), dedup_key=first.dedup_key)
        if len(group) > 1:
            others = tuple(Related(o.check_id or "", o.message.get("title", ""),
                                   o.message.get("severity", "MAJOR"),
                                   o.message.get("value", "")) for o in group)
            worst = max(Severity.parse(r.severity) for r in others)
            msg = replace(msg, title=f"{len(group)} alarms on {self.config.beamline}",
                          severity=worst, alarms=others,
                          check_ids=tuple(o.check_id or "" for o in group))
        if first.kind != "alarm" and first.incident_id:
            ref = self.outbox.sent_ref(first.incident_id, first.receiver, first.destination)
            msg = msg.threaded(ref)
        return msg

    def _record(self, group: list[Outgoing], d: Delivery, duration: float) -> None:
        now = self.clock.now()
        ids = [o.id for o in group]
        first = group[0]
        if d.ok:
            self.sent += 1
            self.outbox.finish(ids, now, status="sent", ok=True, detail=d.detail or "sent",
                               ref=d.ref, duration=duration)
            if first.kind == "repeat":
                self._next_repeat(first, now)
            return
        self.failed += 1
        fallback = self._fallback(first, d, now)
        if d.retry and fallback is None:
            wait = d.retry_after if d.retry_after is not None else backoff(first.attempts)
            self.outbox.finish(ids, now, status="pending", retry=True, detail=d.detail,
                               duration=duration, next_attempt_at=now + wait)
            return
        status = "failed"
        detail = d.detail + (f"; handed over to {fallback}" if fallback else "")
        self.outbox.finish(ids, now, status=status, retry=d.retry, detail=detail,
                           duration=duration)
        if fallback:
            self._queue_fallback(group, fallback, now)
        log.warning("notification failed", extra={"destination": first.destination,
                                                   "detail": d.detail, "ids": ids})

    def _next_repeat(self, row: Outgoing, now: float) -> None:
        every = row.message.get("repeat_every")
        if not every:
            return
        n = int(row.message.get("repeat_n", 1)) + 1
        self.outbox.queue([{
            "dedup_key": f"{row.incident_id}/{row.receiver}/repeat{n}",
            "check_id": row.check_id, "incident_id": row.incident_id, "kind": "repeat",
            "receiver": row.receiver, "destination": row.destination, "route": row.route,
            "message": {**row.message, "repeat_n": n}, "created_at": now,
            "next_attempt_at": now + every,
            "expires_at": now + 2 * every,
        }])

    def _fallback(self, row: Outgoing, d: Delivery, now: float) -> str | None:
        """The person's next destination, if this one is to be given up on."""
        if not row.destination.startswith("person:"):
            return None
        _, _, kind = row.destination.removeprefix("person:").partition("/")
        later = [n for n in row.message.get("fallbacks", []) if n in self.registry]
        if not later:
            return None
        if not d.retry:
            return later[0]
        name = people_channel(self.config, kind)[0] if kind != "webhook" else None
        channel = self.config.channels.get(name or "")
        after = channel.fallback_after if channel and channel.fallback_after else \
            DEFAULT_FALLBACK_AFTER
        return later[0] if now - row.created_at >= after else None

    def _queue_fallback(self, group: list[Outgoing], destination: str, now: float) -> None:
        self.outbox.queue([{
            "dedup_key": f"{o.dedup_key}/fallback/{destination}", "check_id": o.check_id,
            "incident_id": o.incident_id, "kind": o.kind, "receiver": o.receiver,
            "destination": destination, "route": f"fallback from {o.destination}",
            "message": {**o.message, "fallbacks": o.message.get("fallbacks", [])[1:]},
            "created_at": now, "expires_at": o.expires_at,
        } for o in group])
