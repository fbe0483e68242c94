"""The leader's lease: which instance of an HA pair decides and sends (decision 0006).

One row per lease in `leases`. Every time is the DATABASE's clock (epoch
seconds), so clock skew between the two hosts cannot make both believe they
lead. The `token` goes up by one each time the lease changes hands: it is the
fencing token. `check` runs inside the transaction of every decision stored
and every notification claimed, and holds a KEY SHARE lock on the lease row until
that transaction ends. A takeover first locks the row FOR UPDATE, which waits for
that lock: it commits strictly after any write the old leader got in, and after it
the old leader's writes fail. A renewal is a plain UPDATE of columns no key is made
of (FOR NO KEY UPDATE), which a KEY SHARE lock does not block: the leader's own
writes do not hold up its renewal (with FOR SHARE, renewals at 100k checks waited up
to 3 s behind them on a loaded host).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import literal, literal_column, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnElement

from . import tables as t
from .errors import LeaseLost
from .store import Store

L = t.leases.c
ENGINE = "engine"
__all__ = ["ENGINE", "Holder", "Lease", "LeaseLost", "LeaseStore"]


@dataclass(frozen=True, slots=True)
class Holder:
    """One running instance: `id` is unique per process start."""

    id: str
    host: str
    pid: int
    url: str | None = None


@dataclass(frozen=True, slots=True)
class Lease:
    """The lease row as read, with the database's time of the read."""

    holder: str | None
    host: str | None
    pid: int | None
    token: int
    renewals: int
    acquired: float | None
    expires: float
    url: str | None
    now: float

    @property
    def expired(self) -> bool:
        return self.holder is None or self.expires < self.now


class LeaseStore:
    """The SQL of one lease. `now`: a clock for tests on SQLite; by default the
    database's own (PostgreSQL `clock_timestamp()`, SQLite `julianday('now')`)."""

    def __init__(self, store: Store, name: str = ENGINE,
                 now: Callable[[], float] | None = None):
        self.store = store
        self.name = name
        self._now = now

    def _db_now(self) -> ColumnElement:
        if self._now is not None:
            return literal(self._now())
        if self.store.dialect == "postgresql":
            return literal_column("extract(epoch from clock_timestamp())::float8")
        return literal_column("((julianday('now') - 2440587.5) * 86400.0)")

    def read(self) -> Lease:
        with self.store.engine.begin() as conn:
            self._ensure(conn)
            row = conn.execute(select(t.leases, self._db_now().label("now"))
                               .where(L.name == self.name)).mappings().one()
        return Lease(row["holder"], row["host"], row["pid"], row["token"], row["renewals"],
                     row["acquired"], row["expires"], row["url"], float(row["now"]))

    def acquire(self, me: Holder, ttl: float, seen: Lease) -> int | None:
        """Take the lease if it is still exactly as `seen` (same token, not renewed
        since): whether to take it at all is the caller's judgement of `seen`. The new
        fencing token, or None when the holder renewed or someone else moved first."""
        now = self._db_now()
        stmt = (update(t.leases)
                .where(L.name == self.name, L.token == seen.token, L.renewals == seen.renewals)
                .values(holder=me.id, host=me.host, pid=me.pid, url=me.url,
                        token=L.token + 1, renewals=0, acquired=now, expires=now + ttl)
                .returning(L.token))
        with self.store.engine.begin() as conn:
            # waits for the old leader's fenced writes in progress (their KEY SHARE lock)
            conn.execute(select(L.token).where(L.name == self.name).with_for_update())
            return conn.execute(stmt).scalar()

    def renew(self, me: Holder, token: int, ttl: float) -> bool:
        """Extend our lease; False when it is not ours any more (taken over)."""
        now = self._db_now()
        with self.store.engine.begin() as conn:
            return bool(conn.execute(
                update(t.leases).where(L.name == self.name, L.holder == me.id, L.token == token)
                .values(expires=now + ttl, renewals=L.renewals + 1, url=me.url)).rowcount)

    def release(self, me: Holder, token: int) -> bool:
        """Give the lease up (a clean stop): the standby takes it at its next look."""
        with self.store.engine.begin() as conn:
            return bool(conn.execute(
                update(t.leases).where(L.name == self.name, L.holder == me.id, L.token == token)
                .values(holder=None, expires=0.0)).rowcount)

    def check(self, conn: Connection, me: Holder, token: int | None) -> None:
        """Inside a writing transaction: raise LeaseLost unless we hold the lease now."""
        if token is None:
            raise LeaseLost(f"{me.id} is not the leader")
        q = (select(L.token).where(L.name == self.name, L.holder == me.id, L.token == token,
                                   L.expires >= self._db_now())
             .with_for_update(read=True, key_share=True))
        if conn.execute(q).scalar() is None:
            raise LeaseLost(f"{me.id} lost the lease (token {token})")

    def _ensure(self, conn: Connection) -> None:
        if self.store.dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert
        conn.execute(insert(t.leases).values(name=self.name, token=0, renewals=0, expires=0.0)
                     .on_conflict_do_nothing(index_elements=["name"]))

