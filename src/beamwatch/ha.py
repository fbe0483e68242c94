"""An HA pair: two `beamwatch run` with one config and one PostgreSQL store.

Active/standby with a lease in the store (docs/decisions/0006-ha-pair.md). The
instance holding the "engine" lease is the leader: it subscribes, decides,
stores and sends. The other is the standby: it serves the web front end and the
Slack bot from the store (acks, silences and mode changes are store rows, so
they hold on both) and looks at the lease every second. A leader that dies,
hangs or is cut off stops renewing; once its lease has expired, AND stayed so,
unrenewed, for `CONFIRM` more seconds, the standby takes it and starts as a
restarted instance does: it takes back the stored alarm states, incidents and
who was paged, then subscribes. The wait for `CONFIRM` lets a leader that lost
only the database (a PostgreSQL restart) renew first and keep its place, with
the decisions it kept in memory meanwhile.

Safety does not rest on timing: every decision stored and every notification
claimed checks the fencing token in its own transaction (store/lease.py), and
the outbox worker will not start a send unless `held()` — the lease renewed
less than `ttl` ago by this process's monotonic clock, which a frozen process
(SIGSTOP) sees run on.

With SQLite (one host, one process) the same code runs: the lease is simply
always ours, and a restart after a crash takes it back at once (the holder's
pid is dead on this host).
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy.engine import Connection

from .store import Store
from .store.errors import describe
from .store.lease import Holder, Lease, LeaseStore

log = logging.getLogger("beamwatch.ha")

TTL = 5.0  # seconds a lease lasts without renewal
RENEW = 1.0  # the leader renews this often (and retries this often when it fails)
CONFIRM = 2.0  # an expired lease must stay unrenewed this long before a standby takes it
LOOK = 1.0  # the standby looks at the lease this often
# a renewal this far into the lease (from the last one) is logged: the leader came close
# to losing it, and the log says whether its loop or the store held it up
LATE = 0.6


def _pid_space() -> str:
    """Which pid namespace this process is in: two containers with one hostname have
    each their own pids (both may be pid 1), and a pid says nothing across them."""
    try:
        return format(os.stat("/proc/self/ns/pid").st_ino, "x")
    except OSError:
        return "0"


PROCESS = f"{_pid_space()}.{secrets.token_hex(3)}"  # this process, whatever its pid


def here(url: str | None = None) -> Holder:
    """This process. BEAMWATCH_HOST names the host when its hostname does not tell the
    pair's members apart (containers; tests that play two hosts on one). The id is
    HOST:PID:PIDSPACE.PROCESS.APP."""
    host = os.environ.get("BEAMWATCH_HOST") or socket.gethostname()
    pid = os.getpid()
    return Holder(f"{host}:{pid}:{PROCESS}.{secrets.token_hex(2)}", host, pid, url)


def _dead_here(lease: Lease, me: Holder) -> bool:
    """The holder was an earlier App of this very process (one that stepped down or
    was dropped), or ran on this host, in this pid namespace, and its process is gone
    (a crash, a kill -9)."""
    if lease.holder is None or lease.host != me.host or not lease.pid:
        return False
    mine = me.id.rsplit(".", 1)[0]  # HOST:PID:PIDSPACE.PROCESS
    if lease.holder.startswith(mine + "."):
        return lease.holder != me.id
    space = me.id.split(":")[-1].split(".")[0]
    if lease.pid == me.pid or not lease.holder.split(":")[-1].startswith(space + "."):
        return False  # another process with our pid, or another pid namespace: alive
    try:
        os.kill(lease.pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


class Leadership:
    """This instance's part in the pair: standby until it holds the lease, then the
    leader until it loses it."""

    def __init__(self, store: Store, me: Holder, ttl: float = TTL, renew: float = RENEW,
                 confirm: float = CONFIRM, look: float = LOOK,
                 monotonic: Callable[[], float] = time.monotonic,
                 now: Callable[[], float] | None = None):
        self.leases = LeaseStore(store, now=now)
        self.me = me
        self.ttl, self.renew_every, self.confirm, self.look = ttl, renew, confirm, look
        self._monotonic = monotonic
        self.token: int | None = None
        self.valid_until = 0.0  # monotonic: the lease is ours until then at least
        # monotonic: when the last renewal (or the taking) started, and when it ended
        self._renewed = self._renewed_end = 0.0
        self.since: float | None = None  # wall time we became the leader
        self._seen: tuple[int, int, float] | None = None  # (token, renewals, when) expired
        self.leader: Lease | None = None  # as last read, for status
        # the lease's own thread: a renewal must not queue behind other blocking work
        # (asyncio's default pool also claims outbox rows, reads calendars...)
        self._thread: ThreadPoolExecutor | None = None

    async def off_loop(self, fn: Callable[[], object]) -> object:
        """Run a blocking lease call (try_lead, refresh, release) on the lease's thread."""
        if self._thread is None:
            self._thread = ThreadPoolExecutor(1, thread_name_prefix="beamwatch-lease")
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn)

    def close(self) -> None:
        """Let the lease's thread go (a later off_loop starts another)."""
        if self._thread is not None:
            self._thread.shutdown(wait=False)
            self._thread = None

    @property
    def role(self) -> str:
        """leader; standby (another instance leads); starting (not decided yet)."""
        if self.token is not None:
            return "leader"
        seen = self.leader
        return "standby" if seen is not None and seen.holder is not None else "starting"

    def held(self) -> bool:
        """Ours for sure right now (no database round trip): renewed less than a
        lease's length ago, by this process's monotonic clock."""
        return self.token is not None and self._monotonic() < self.valid_until

    def fence(self, conn: Connection) -> None:
        """In a writing transaction: raise LeaseLost unless this instance leads."""
        self.leases.check(conn, self.me, self.token)

    # -- the standby ------------------------------------------------------------------

    def try_lead(self) -> bool:
        """One look at the lease (blocking: run it off the loop); True when it is ours now."""
        lease = self.leases.read()
        self.leader = lease
        if not self._may_take(lease):
            return False
        started = self._monotonic()
        token = self.leases.acquire(self.me, self.ttl, lease)
        if token is None:
            self._seen = None
            return False
        self.token, self.valid_until, self.since = token, started + self.ttl, time.time()
        self._renewed = self._renewed_end = started
        took_over = lease.holder is not None and lease.pid != self.me.pid
        (log.warning if took_over else log.info)(
            "this instance leads now", extra={"instance": self.me.id, "token": token,
                                              "previous": lease.holder})
        return True

    def _may_take(self, lease: Lease) -> bool:
        if lease.holder is None or _dead_here(lease, self.me):
            return True
        if not lease.expired:
            self._seen = None
            return False
        key = (lease.token, lease.renewals)
        if self._seen is None or self._seen[:2] != key:
            self._seen = (*key, self._monotonic())
            log.warning("the leader's lease has expired; taking over in %.0f s unless it "
                        "renews", self.confirm, extra={"leader": lease.holder})
            return False
        return self._monotonic() - self._seen[2] >= self.confirm

    async def wait_to_lead(self, stop: asyncio.Event,
                           standing_by: Callable[[], None] | None = None) -> bool:
        """Look at the lease every `look` seconds until it is ours (True) or `stop`."""
        failing = False
        while not stop.is_set():
            try:
                if await self.off_loop(self.try_lead):
                    return True
            except Exception as e:  # the store is away: keep looking
                if not failing:
                    log.error("cannot read the lease: %s", describe(e))
                failing = True
            else:
                failing = False
                if standing_by is not None:
                    standing_by()
            try:
                async with asyncio.timeout(self.look):
                    await stop.wait()
            except TimeoutError:
                pass
        return False

    # -- the leader -------------------------------------------------------------------

    def refresh(self) -> bool:
        """Renew once (blocking); False when the lease is another instance's now.
        Raises when the store cannot be reached."""
        if self.token is None:
            return False
        started = self._monotonic()
        if not self.leases.renew(self.me, self.token, self.ttl):
            log.error("this instance lost the lease to another; stepping down",
                      extra={"instance": self.me.id})
            self.token = None
            return False
        self.valid_until = started + self.ttl
        self._late(started)
        return True

    def _late(self, started: float) -> None:
        """Log a renewal that came late into the lease: how long the loop was late to
        ask (beyond `renew`), and how long the store took to answer, then and before."""
        ended = self._monotonic()
        into = ended - self._renewed  # the lease ran from the last renewal's start
        loop = started - self._renewed_end - self.renew_every
        before = self._renewed_end - self._renewed
        self._renewed, self._renewed_end = started, ended
        if into > self.ttl * LATE:
            log.warning("lease renewed late, %.1f s into it: the loop was %.1f s late to "
                        "renew, the store took %.1f s (and %.1f s the time before)", into,
                        max(0.0, loop), ended - started, before,
                        extra={"instance": self.me.id})

    async def keep(self, stop: asyncio.Event) -> None:
        """Renew every `renew` seconds; return when the lease is lost to another
        instance. A store that cannot be reached is not a loss: we keep trying, and
        `held()` turns false when the lease runs out meanwhile."""
        failing = False
        while not stop.is_set():
            try:
                ours = await self.off_loop(self.refresh)
            except Exception as e:
                if not failing:
                    log.error("cannot renew the lease (the store?): %s", describe(e))
                failing = True
            else:
                if not ours:
                    return
                if failing:
                    log.warning("lease renewed again")
                failing = False
            try:
                async with asyncio.timeout(self.renew_every):
                    await stop.wait()
            except TimeoutError:
                pass

    def release(self) -> None:
        """A clean stop: hand the lease over at once (blocking)."""
        if self.token is None:
            return
        try:
            self.leases.release(self.me, self.token)
        except Exception as e:  # it expires by itself
            log.warning("could not release the lease: %s", describe(e))
        self.token = None


__all__ = ["Holder", "Leadership", "here"]
