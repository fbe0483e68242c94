"""The outbox: notifications decided and stored, claimed by workers, every attempt kept.

Claiming is one atomic statement, so two workers (or two HA nodes) never
take the same row: on PostgreSQL `SELECT … FOR UPDATE SKIP LOCKED` inside an
UPDATE … RETURNING; on SQLite the same UPDATE … RETURNING, which SQLite runs
under its single write lock. A row claimed by a worker that died is claimed
again once its `claimed_until` has passed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, func, insert, or_, select, update
from sqlalchemy.engine import Connection

from . import tables as t
from .store import Store

N = t.notifications.c


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One claimed notification."""

    id: int
    dedup_key: str
    check_id: str | None
    incident_id: str | None
    kind: str
    receiver: str
    destination: str
    route: str | None
    message: dict[str, Any]
    attempts: int
    created_at: float
    expires_at: float | None
    transition_id: int | None
    claimed_until: float | None = None  # with the worker's name, proof the claim is ours


def _outgoing(r) -> Outgoing:
    return Outgoing(r["id"], r["dedup_key"], r["check_id"], r["incident_id"], r["kind"],
                    r["receiver"], r["destination"], r["route"], r["message"], r["attempts"],
                    r["created_at"], r["expires_at"], r["transition_id"], r["claimed_until"])


class Outbox:
    """`lease`: how long a claim holds before the row's send starts; the worker then
    extends it (`hold`) to cover that destination's worst-case send time."""

    def __init__(self, store: Store, worker: str = "worker-1", lease: float = 60.0):
        self.store = store
        self.worker = worker
        self.lease = lease

    def queue(self, rows: list[dict], conn: Connection | None = None) -> int:
        """Insert rows whose dedup_key is new; a row already queued is skipped."""
        if conn is None:
            with self.store.engine.begin() as c:
                return self.queue(rows, c)
        before = conn.execute(select(func.count()).select_from(t.notifications)).scalar_one()
        for row in rows:
            self.store._queue(conn, dict(row))
        return conn.execute(select(func.count()).select_from(t.notifications)).scalar_one() - before

    def claim(self, now: float, limit: int = 50) -> list[Outgoing]:
        """Take due rows: pending ones whose time has come, and abandoned claims."""
        due = or_(
            and_(N.status == "pending", N.next_attempt_at <= now),
            and_(N.status == "sending", N.claimed_until < now),
        )
        pick = select(N.id).where(due).order_by(N.next_attempt_at, N.id).limit(limit)
        if self.store.dialect == "postgresql":
            pick = pick.with_for_update(skip_locked=True)
        stmt = (update(t.notifications).where(N.id.in_(pick.scalar_subquery()))
                .values(status="sending", claimed_by=self.worker,
                        claimed_until=now + self.lease)
                .returning(*t.notifications.c))
        with self.store.engine.begin() as conn:
            self.store.fenced(conn)
            rows = list(conn.execute(stmt).mappings().all())
            rows += self._claim_group_mates(conn, rows, now)
        return sorted((_outgoing(r) for r in rows), key=lambda o: (o.created_at, o.id))

    def _claim_group_mates(self, conn: Connection, rows: list, now: float) -> list:
        """group_wait: when the first alarm for a receiver is due, the alarms that came
        for the same receiver while it waited go with it, in one message."""
        pairs = {(r["receiver"], r["destination"]) for r in rows if r["kind"] == "alarm"}
        mates: list = []
        for receiver, destination in sorted(pairs):
            pick = select(N.id).where(N.status == "pending", N.kind == "alarm",
                                      N.receiver == receiver, N.destination == destination,
                                      N.created_at <= now)
            if self.store.dialect == "postgresql":
                pick = pick.with_for_update(skip_locked=True)
            mates += conn.execute(
                update(t.notifications).where(N.id.in_(pick.scalar_subquery()))
                .values(status="sending", claimed_by=self.worker,
                        claimed_until=now + self.lease)
                .returning(*t.notifications.c)).mappings().all()
        return mates

    def take_pending(self, receiver: str, destination: str, now: float) -> list[Outgoing]:
        """Claim every pending row for one receiver (to fold them into a summary)."""
        due_or_news = or_(N.next_attempt_at <= now, N.kind.in_(("alarm", "summary")))
        pick = select(N.id).where(N.status == "pending", N.receiver == receiver,
                                  N.destination == destination, N.created_at <= now,
                                  due_or_news)
        if self.store.dialect == "postgresql":
            pick = pick.with_for_update(skip_locked=True)
        with self.store.engine.begin() as conn:
            self.store.fenced(conn)
            rows = conn.execute(
                update(t.notifications).where(N.id.in_(pick.scalar_subquery()))
                .values(status="sending", claimed_by=self.worker,
                        claimed_until=now + self.lease)
                .returning(*t.notifications.c)).mappings().all()
        return [_outgoing(r) for r in rows]

    def next_due(self) -> float | None:
        with self.store.engine.connect() as conn:
            return conn.execute(
                select(N.next_attempt_at).where(N.status == "pending")
                .order_by(N.next_attempt_at).limit(1)).scalar()

    def hold(self, rows: list[Outgoing], until: float) -> list[int]:
        """Extend our claim on these rows to `until`, just before their send starts.
        Returns the ids still ours: a row whose claim lapsed and that another worker
        took since is theirs now, and must not be sent from here as well."""
        ours: list[int] = []
        with self.store.engine.begin() as conn:
            self.store.fenced(conn)  # the send starts next: only while we lead
            for row in rows:
                taken = conn.execute(
                    update(t.notifications)
                    .where(N.id == row.id, N.status == "sending", N.claimed_by == self.worker,
                           N.claimed_until == row.claimed_until)
                    .values(claimed_until=until)).rowcount
                if taken:
                    ours.append(row.id)
        return ours

    def release(self, ids: list[int]) -> int:
        """Give claimed rows back unsent (the worker is stopping): pending again, due as
        they were, so the next worker to start sends them at once instead of waiting for
        the lease to lapse. Rows another worker holds now are left alone."""
        if not ids:
            return 0
        with self.store.engine.begin() as conn:
            return conn.execute(
                update(t.notifications)
                .where(N.id.in_(ids), N.status == "sending", N.claimed_by == self.worker)
                .values(status="pending", claimed_by=None, claimed_until=None)).rowcount

    def finish(self, ids: list[int], now: float, *, status: str, detail: str | None = None,
               ok: bool = False, retry: bool = False, duration: float | None = None,
               next_attempt_at: float | None = None, ref: Any = None,
               count_attempt: bool = True, conn: Connection | None = None) -> None:
        """Record one attempt's outcome for each row (a grouped message covers several);
        inside `conn`'s transaction when given, so what follows from it commits with it.
        Not limited to this worker's claim, on purpose: it records a send that happened.
        Whether to send was decided by `hold` (fenced, claim still ours); a row another
        worker took since is being sent again anyway (decision 0006's one window), and
        recording this send is what stops a third."""
        if conn is None:
            with self.store.engine.begin() as c:
                self.finish(ids, now, status=status, detail=detail, ok=ok, retry=retry,
                            duration=duration, next_attempt_at=next_attempt_at, ref=ref,
                            count_attempt=count_attempt, conn=c)
            return
        for nid in ids:
            if count_attempt:
                conn.execute(insert(t.attempts).values(
                    notification_id=nid, time=now, ok=ok, retry=retry, detail=detail,
                    duration=duration))
            values: dict[str, Any] = {"status": status, "claimed_by": None,
                                      "claimed_until": None,
                                      "last_error": None if ok else detail}
            if count_attempt:
                values["attempts"] = N.attempts + 1
            if ok:
                values.update(sent_at=now, ref=ref)
            if next_attempt_at is not None:
                values["next_attempt_at"] = next_attempt_at
            conn.execute(update(t.notifications).where(N.id == nid).values(**values))

    def sent_ref(self, incident_id: str, receiver: str, destination: str) -> Any:
        """The delivery reference (e.g. Slack channel+ts) of the first alarm message
        sent for an incident to this receiver, so later messages update it in place."""
        with self.store.engine.connect() as conn:
            return conn.execute(
                select(N.ref).where(N.incident_id == incident_id, N.receiver == receiver,
                                    N.destination == destination, N.status == "sent",
                                    N.kind == "alarm", N.ref.is_not(None))
                .order_by(N.id).limit(1)).scalar()

    def paged(self, incident_ids: list[str]) -> set[str]:
        """Which of these incidents already have alarm notifications decided."""
        if not incident_ids:
            return set()
        with self.store.engine.connect() as conn:
            return set(conn.execute(select(N.incident_id).where(
                N.incident_id.in_(incident_ids), N.kind == "alarm").distinct()).scalars())

    def told(self, incident_id: str) -> list[tuple[str, str, str | None]]:
        """(receiver, destination, which rules told them) for everyone sent an alarm,
        repeat or escalation of this incident."""
        with self.store.engine.connect() as conn:
            rows = conn.execute(
                select(N.receiver, N.destination, N.route).where(
                    N.incident_id == incident_id, N.status == "sent",
                    N.kind.in_(("alarm", "repeat", "escalation")))
                .order_by(N.id)).all()
        told: dict[tuple[str, str], str] = {}
        for receiver, destination, route in rows:
            told[(receiver, destination)] = "; ".join(
                x for x in (told.get((receiver, destination)), route) if x)
        return sorted((r, d, route or None) for (r, d), route in told.items())

    def sent_between(self, since: float, until: float) -> list[dict]:
        """Notifications delivered in [since, until), oldest first (the dashboard's log)."""
        q = (select(N.sent_at, N.check_id, N.kind, N.receiver)
             .where(N.status == "sent", N.sent_at >= since, N.sent_at < until)
             .order_by(N.sent_at))
        with self.store.engine.connect() as conn:
            return [dict(r) for r in conn.execute(q).mappings().all()]

    def rows(self, **where: Any) -> list[dict]:
        """Notifications as dicts (for the log, reports and tests)."""
        q = select(t.notifications).order_by(N.id)
        for key, value in where.items():
            q = q.where(getattr(N, key) == value)
        with self.store.engine.connect() as conn:
            return [dict(r) for r in conn.execute(q).mappings().all()]

    def attempts(self, notification_id: int) -> list[dict]:
        with self.store.engine.connect() as conn:
            return [dict(r) for r in conn.execute(
                select(t.attempts).where(t.attempts.c.notification_id == notification_id)
                .order_by(t.attempts.c.id)).mappings().all()]
