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
Every attempt and its outcome is a row in `attempts`; so is every failure of the
worker itself around a send (a row that cannot be rendered fails for good, with
the reason, through `_give_up`).

Claims and stops:
- a claim is held for `Outbox.lease` until the send starts, then extended to the
  destination's worst-case send time (`Notifier.worst_case`) plus the time to
  store the outcome, so no other worker sends the row while this one may be;
- an outcome that cannot be stored after a send is stored again until it is:
  the send happened, and a lapsed claim would send it twice;
- a stop (SIGTERM) gives sends in flight `grace` seconds to finish and be
  recorded; rows claimed but not yet sent go back to pending, due at once for
  the next start; a send cut by the grace is recorded as interrupted and retried.

At-least-once, by design: a crash between a successful send and the store
write of its outcome resends that one message on restart (its lease expires),
and so does a send cut by the stop grace. Every message carries its outbox id
and dedup key (webhook body, email headers) so a receiver can drop the
duplicate; everything else is exactly once.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from sqlalchemy import select

from ..clock import Clock, SystemClock
from ..config.schema import Config
from ..model import Severity
from ..model.message import HELD, TOLD
from ..routing.router import Router
from ..store import Store
from ..store import tables as t
from ..store.errors import LeaseLost, describe, is_transient
from ..store.outbox import Outbox, Outgoing
from .base import Delivery, ErrorKind, Message, Related
from .registry import Registry, people_channel

log = logging.getLogger("beamwatch.notify")

MAX_IN_FLIGHT = 64  # deliveries at once; rows beyond wait in the outbox, claimed later
BACKOFF_FIRST = 2.0
BACKOFF_MAX = 300.0
DEFAULT_FALLBACK_AFTER = 300.0
FOLLOW_UPS = ("repeat", "escalation")
DEFAULT_GRACE = 5.0  # a stop waits this long for sends in flight, then cuts them
DEFAULT_WORST_CASE = 60.0  # a notifier that does not say how long a send can take
# The claim must also outlast storing the outcome: SQLite waits up to 30 s for its lock.
STORE_MARGIN = 35.0
STORE_RETRY_FIRST = 0.1  # retrying the store write of an outcome: 0.1 s, 0.2 s … 5 s
STORE_RETRY_MAX = 5.0


@dataclass(eq=False)
class Flight:
    """One delivery (one message, one or more rows) on its way, so that a stop knows
    what each claimed row still needs: released unsent, recorded as interrupted, or
    its known outcome stored."""

    rows: list[Outgoing]
    phase: str = "claimed"  # claimed -> sending -> sent (outcome known) -> done
    delivery: Delivery | None = None
    duration: float = 0.0
    task: asyncio.Task | None = field(default=None, repr=False)

    @property
    def ids(self) -> list[int]:
        return [o.id for o in self.rows]


def backoff(attempts: int, rng: Callable[[], float] = random.random) -> float:
    """2 s, 4 s, 8 s … capped at 5 min, with ±50 % jitter so retries of many rows spread."""
    base = min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** max(0, attempts))
    return base * (0.5 + rng())


class OutboxWorker:
    def __init__(self, config: Config, store: Store, registry: Registry,
                 clock: Clock | None = None, name: str = "worker-1", batch: int = 50,
                 lease: float = 60.0):
        """`lease`: how long a claim holds until its send starts (then it is extended
        to the destination's worst case)."""
        self.config = config
        self.store = store
        self.registry = registry
        self.clock = clock or SystemClock()
        self.outbox = Outbox(store, worker=name, lease=lease)
        self.batch = batch
        self._wake = asyncio.Event()
        # deliveries run as their own tasks: a slow channel never holds up the others
        self._inflight: set[asyncio.Task] = set()
        self._flights: set[Flight] = set()
        self._stopping = False
        self.router = Router(config)
        self._check_ids = set(config.check_ids)
        self.sent = 0
        self.failed = 0
        # an HA pair's leader sends only while its lease is surely its own (ha.py): a
        # process frozen past its lease starts no send when it wakes up
        self.may_send: Callable[[], bool] = lambda: True

    def reconfigure(self, config: Config, registry: Registry) -> None:
        """A reloaded config: new destinations and routes for rows not yet sent."""
        self.config, self.registry = config, registry
        self.router = Router(config)
        self._check_ids = set(config.check_ids)

    def wake(self) -> None:
        """Called when new rows are committed: deliver now, not at the next poll."""
        self._wake.set()

    async def run(self, stop: asyncio.Event, poll: float = 1.0,
                  grace: float = DEFAULT_GRACE) -> None:
        """Deliver until `stop` is set, then `shutdown(grace)`. The shutdown also runs
        when this task is cancelled (the app cancels it on SIGTERM), and finishes
        before the cancellation goes on."""
        self._stopping = False
        try:
            await self._serve(stop, poll)
        finally:
            await self.shutdown(grace)

    async def _serve(self, stop: asyncio.Event, poll: float) -> None:
        failing = False
        while not stop.is_set():
            # cleared BEFORE looking: a wake-up that comes while we look is not lost
            self._wake.clear()
            try:
                busy = await self.run_once()
            except Exception as e:
                if is_transient(e) and failing:  # the store is away: said once, not per poll
                    log.debug("outbox worker round failed again: %s", describe(e))
                elif is_transient(e):
                    log.error("outbox worker cannot reach the store, retrying: %s", describe(e))
                else:
                    log.exception("outbox worker round failed; retrying")
                failing, busy = True, False
            else:
                if failing:
                    log.warning("outbox worker reaches the store again")
                failing = False
            if busy:
                if len(self._inflight) >= MAX_IN_FLIGHT:
                    await asyncio.wait(self._inflight, return_when=asyncio.FIRST_COMPLETED)
                continue
            waiter = asyncio.ensure_future(self._wake.wait())
            stopper = asyncio.ensure_future(stop.wait())
            try:
                await asyncio.wait({waiter, stopper}, timeout=poll,
                                   return_when=asyncio.FIRST_COMPLETED)
            finally:
                waiter.cancel()
                stopper.cancel()

    async def run_once(self) -> bool:
        """Claim and handle one batch; True if there was anything to do."""
        now = self.clock.now()
        if not self.may_send():
            return False
        rows = await asyncio.to_thread(self.outbox.claim, now, self.batch)
        if not rows:
            return False
        sends: dict[tuple[str, str], list[Outgoing]] = defaultdict(list)
        expired: dict[tuple[str, str], list[Outgoing]] = defaultdict(list)
        for row in rows:
            if row.receiver.startswith(TOLD) and (why := await asyncio.to_thread(
                    self._stale_resolve, row)):
                await asyncio.to_thread(self.outbox.finish, [row.id], now, status="cancelled",
                                        detail=why, count_attempt=False)
            elif row.receiver.startswith(TOLD):
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
            self._launch(Flight(group))
        return True

    def _launch(self, flight: Flight) -> None:
        self._flights.add(flight)
        task = flight.task = asyncio.ensure_future(self._deliver(flight))
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)

    async def drain(self) -> None:
        """Wait for every delivery in flight (tests, and `App.step`)."""
        while self._inflight:
            await asyncio.gather(*list(self._inflight), return_exceptions=True)

    async def shutdown(self, grace: float = DEFAULT_GRACE) -> None:
        """Stop cleanly: no new sends start; sends in flight get `grace` seconds to
        finish and be recorded; then whatever is left is settled (`_settle`)."""
        self._stopping = True
        tasks = [f.task for f in self._flights if f.task is not None and not f.task.done()]
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=grace)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
            if late:
                log.warning("stopping: %d send(s) still running after %gs were cut",
                            len(late), grace)
        left, self._flights = list(self._flights), set()
        if left:
            try:
                await asyncio.to_thread(self._settle, left, self.clock.now())
            except Exception:  # the store is gone: the leases lapse and the rows are re-sent
                log.exception("stopping: could not give back %d claimed row(s)",
                              sum(len(f.rows) for f in left))

    def _settle(self, flights: list[Flight], now: float) -> None:
        """What a stop leaves: rows never sent go back to pending untouched; a send
        cut mid-way is an attempt (the receiver may or may not have it) retried at
        once; a send whose outcome is known is recorded as it would have been."""
        unsent = [i for f in flights if f.phase == "claimed" for i in f.ids]
        released = self.outbox.release(unsent)
        for f in flights:
            if f.phase == "sending":
                self.outbox.finish(f.ids, now, status="pending", retry=True,
                                   detail="interrupted by a stop; sent again at the next start",
                                   duration=f.duration)
            elif f.phase == "sent" and f.delivery is not None:
                self._record(f.rows, f.delivery, f.duration)
        if unsent:
            log.info("stopping: %d claimed row(s) given back unsent", released)

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

    def _stale_resolve(self, row: Outgoing) -> str | None:
        """A resolve waits out recovery_grace in the outbox; say why it is no news now:
        its incident reopened (the fault bounced) or resolved again later."""
        resolved_at = row.message.get("resolved_at")
        if row.kind != "resolve" or resolved_at is None or not row.incident_id:
            return None
        with self.store.engine.connect() as conn:
            resolved = conn.execute(select(t.incidents.c.resolved).where(
                t.incidents.c.id == row.incident_id)).scalar_one_or_none()
        if resolved is None:
            return "cancelled: the incident reopened within its recovery grace"
        if abs(resolved - resolved_at) > 1e-3:
            return "cancelled: superseded by a later resolve of the same incident"
        return None

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

    async def _deliver(self, flight: Flight) -> None:
        """One delivery, guarded: whatever goes wrong is an attempt on its rows."""
        try:
            await self._attempt(flight)
            if not (self._stopping and flight.phase == "claimed"):  # else: the stop's
                self._flights.discard(flight)
        except asyncio.CancelledError:
            raise  # a stop cut it: `shutdown` settles the flight
        except Exception as e:
            log.exception("delivery to %s failed inside beamwatch", flight.rows[0].destination)
            if flight.phase == "sent":  # the send happened: only its record is missing
                await self._store_outcome(flight)
                self._flights.discard(flight)
                return
            detail = f"internal error before sending: {type(e).__name__}: {e}"
            await self._store(flight, self._retry_later, flight.rows, detail,
                              self.clock.now())
            self._flights.discard(flight)

    async def _attempt(self, flight: Flight) -> None:
        group = flight.rows
        first = group[0]
        now = self.clock.now()
        notifier = self.registry.get(first.destination)
        if notifier is None:
            detail = f"no destination '{first.destination}' in the config"
            await self._store(flight, self._give_up, group, detail, now)
            return
        try:
            message = self._compose(group)
        except Exception as e:  # a stored row no Message can be made of: never will be
            detail = f"cannot be rendered: {type(e).__name__}: {e}"
            await self._store(flight, self._give_up, group, detail, now)
            return
        message = await asyncio.to_thread(self._thread, message, first)
        if self._stopping:
            return  # claimed, not started: the stop gives it back
        worst = getattr(notifier, "worst_case", None) or DEFAULT_WORST_CASE
        if not await self._hold(flight, worst + STORE_MARGIN):
            return
        if len(flight.rows) < len(group):
            group = flight.rows
            message = await asyncio.to_thread(self._thread, self._compose(group), first)
        if self._stopping:
            return
        flight.phase = "sending"
        started = time.monotonic()
        try:
            delivery = await notifier.send(message)
        except Exception as e:  # a notifier bug must not stop the worker
            log.exception("notifier %s raised", first.destination)
            delivery = Delivery.failed(ErrorKind.INTERNAL, f"internal error: {type(e).__name__}")
        finally:
            flight.duration = time.monotonic() - started
        flight.delivery, flight.phase = delivery, "sent"
        await self._store_outcome(flight)

    async def _hold(self, flight: Flight, seconds: float) -> bool:
        """Keep our claim on the flight's rows `seconds` from now; drop any row another
        worker took meanwhile. False when none is ours any more."""
        until = self.clock.now() + seconds
        try:
            if not self.may_send():
                raise LeaseLost("the lease ran out")
            ours = set(await asyncio.to_thread(self.outbox.hold, flight.rows, until))
        except LeaseLost as e:  # the rows are the new leader's once their claim lapses
            log.warning("not sending %d row(s): this instance no longer leads (%s)",
                        len(flight.rows), e)
            flight.rows = []
            return False
        if len(ours) < len(flight.rows):
            log.warning("claim on %d row(s) lapsed and was taken by another worker; "
                        "not sending them from here", len(flight.rows) - len(ours))
        flight.rows = [replace(o, claimed_until=until) for o in flight.rows if o.id in ours]
        return bool(flight.rows)

    async def _store(self, flight: Flight, write: Callable, *args) -> None:
        """A store write before any send; if it fails, the claim lapses and the row is
        tried again (nothing was sent, so nothing can be sent twice)."""
        try:
            await asyncio.to_thread(write, *args)
            flight.phase = "done"
        except Exception:
            log.exception("storing the outcome of rows %s failed; they are tried again "
                          "when their claim lapses", flight.ids)

    async def _store_outcome(self, flight: Flight) -> None:
        """Store a send's outcome, again and again until it is stored: it was sent, and
        a row left claimed would be sent a second time once its claim lapsed."""
        assert flight.delivery is not None
        tries = 0
        while True:
            try:
                await asyncio.to_thread(self._record, flight.rows, flight.delivery,
                                        flight.duration)
                flight.phase = "done"
                return
            except Exception as e:
                tries += 1
                wait = min(STORE_RETRY_MAX, STORE_RETRY_FIRST * 2 ** (tries - 1))
                log.error("storing the outcome of a send to %s failed (%s: %s); the send "
                          "happened, storing again in %gs (try %d)",
                          flight.rows[0].destination, type(e).__name__, e, wait, tries)
            await asyncio.sleep(wait)
            if not self.may_send():  # not the leader now: recording is all that is left
                continue
            try:  # and keep the claim meanwhile, so nobody sends it again
                kept = await self._hold(flight, wait + STORE_MARGIN)
            except Exception:
                continue  # the store is down: nobody can claim it either
            if not kept:
                flight.phase = "done"  # another worker has it now; its outcome is theirs
                return

    def _compose(self, group: list[Outgoing]) -> Message:
        """The message for a group of rows, from what was stored (no I/O)."""
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
        return msg

    def _thread(self, msg: Message, first: Outgoing) -> Message:
        """Follow-ups go in the thread of the incident's first message there."""
        if first.kind != "alarm" and first.incident_id:
            ref = self.outbox.sent_ref(first.incident_id, first.receiver, first.destination)
            msg = msg.threaded(ref)
        return msg

    def _record(self, group: list[Outgoing], d: Delivery, duration: float) -> None:
        """One transaction: the attempt, and what follows from it (the next repeat, the
        hand-over to a fallback), so storing it again after a failure does it once."""
        now = self.clock.now()
        ids = [o.id for o in group]
        first = group[0]
        if d.ok:
            with self.store.engine.begin() as conn:
                self.outbox.finish(ids, now, status="sent", ok=True, detail=d.detail or "sent",
                                   ref=d.ref, duration=duration, conn=conn)
                if first.kind == "repeat":
                    self._next_repeat(first, now, conn)
            self.sent += 1
            return
        fallback = self._fallback(first, d, now)
        if d.retry and fallback is None:
            wait = d.retry_after if d.retry_after is not None else backoff(first.attempts)
            self.outbox.finish(ids, now, status="pending", retry=True, detail=d.detail,
                               duration=duration, next_attempt_at=now + wait)
        elif fallback:
            with self.store.engine.begin() as conn:
                self.outbox.finish(ids, now, status="failed", retry=d.retry,
                                   detail=f"{d.detail}; handed over to {fallback}",
                                   duration=duration, conn=conn)
                self._queue_fallback(group, fallback, now, conn)
            log.warning("notification failed, handed over", extra={
                "destination": first.destination, "detail": d.detail, "ids": ids})
        else:
            self._give_up(group, d.detail, now, retry=d.retry, duration=duration)
        self.failed += 1

    def _retry_later(self, group: list[Outgoing], detail: str, now: float) -> None:
        """A failure inside beamwatch before the send: an attempt, tried again later."""
        self.outbox.finish([o.id for o in group], now, status="pending", retry=True,
                           detail=detail, next_attempt_at=now + backoff(group[0].attempts))
        self.failed += 1

    def _give_up(self, group: list[Outgoing], detail: str, now: float, *,
                 retry: bool = False, duration: float | None = None) -> None:
        """Fail these rows for good, with the reason, as one attempt. The one place a
        row is given up on: what must happen to a page nobody will get belongs here."""
        ids = [o.id for o in group]
        rows = self._to_fallback(group, detail, now)
        if rows:
            detail += f"; handed to the fallback ({', '.join(r['destination'] for r in rows)})"
        with self.store.engine.begin() as conn:
            self.outbox.finish(ids, now, status="failed", retry=retry, detail=detail,
                               duration=duration, conn=conn)
            self.outbox.queue(rows, conn)
        log.warning("notification failed for good", extra={
            "destination": group[0].destination, "detail": detail, "ids": ids})

    def _to_fallback(self, group: list[Outgoing], detail: str, now: float) -> list[dict]:
        """A page nobody will get goes to the top-level `fallback:` receivers, saying what
        failed; never a fallback's own failure (no loops), never an ack/resolve/summary."""
        first = group[0]
        if first.kind not in ("alarm", "repeat", "escalation") \
                or first.receiver.startswith("fallback:"):
            return []
        why = f"{first.destination} failed for good: {detail}"
        rows = []
        for target in self.config.fallback:
            names = self._destinations(target)
            if not names or names[0] == first.destination:
                continue
            for o in group:
                message = {**o.message, "fallbacks": names[1:],
                           "text": f"{o.message.get('text') or ''}\n"
                                   f"[sent to the fallback: {why}]".strip()}
                rows.append({
                    "dedup_key": f"{o.dedup_key}/fallback/{names[0]}", "check_id": o.check_id,
                    "incident_id": o.incident_id, "kind": o.kind,
                    "receiver": f"fallback:{target}", "destination": names[0],
                    "route": f"fallback: {why}"[:200], "message": message, "created_at": now,
                })
        return rows

    def _destinations(self, target: str) -> list[str]:
        kind, _, name = target.partition(":")
        if kind == "channel":
            return [target] if target in self.registry else []
        if kind == "person":
            return [n.name for n in self.registry.person(name)]
        return []  # team/oncall: resolved by the router at page time, not here

    def _next_repeat(self, row: Outgoing, now: float, conn=None) -> None:
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
        }], conn)

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

    def _queue_fallback(self, group: list[Outgoing], destination: str, now: float,
                        conn=None) -> None:
        self.outbox.queue([{
            "dedup_key": f"{o.dedup_key}/fallback/{destination}", "check_id": o.check_id,
            "incident_id": o.incident_id, "kind": o.kind, "receiver": o.receiver,
            "destination": destination, "route": f"fallback from {o.destination}",
            "message": {**o.message, "fallbacks": o.message.get("fallbacks", [])[1:]},
            "created_at": now, "expires_at": o.expires_at,
        } for o in group], conn)
