"""The leader's lease of an HA pair (ha.py, store/lease.py), on SQLite with the
clocks injected: who leads, when a standby may take over, and that an instance
that lost the lease can neither store a decision nor claim a notification."""

from __future__ import annotations

import subprocess
import sys

import pytest

from beamwatch import ha
from beamwatch.ha import Leadership
from beamwatch.model import AlarmState, Severity, Transition
from beamwatch.store import Store
from beamwatch.store.errors import LeaseLost, is_transient
from beamwatch.store.lease import Holder
from beamwatch.store.outbox import Outbox


class Clocks:
    """The database's clock and each instance's monotonic one, moved by hand."""

    def __init__(self):
        self.db = 1_000_000.0
        self.mono = 100.0

    def advance(self, seconds: float) -> None:
        self.db += seconds
        self.mono += seconds


@pytest.fixture
def clocks() -> Clocks:
    return Clocks()


@pytest.fixture
def store(tmp_path):
    s = Store(f"sqlite:///{tmp_path / 'bw.db'}")
    yield s
    s.close()


def member(store: Store, clocks: Clocks, host: str, pid: int,
           space: str = ha.PROCESS.split(".")[0]) -> Leadership:
    """An instance as `ha.here` names it: HOST:PID:PIDSPACE.PROCESS.APP."""
    holder = Holder(f"{host}:{pid}:{space}.p{pid}.ab", host, pid)
    return Leadership(store, holder, ttl=5.0, confirm=2.0,
                      monotonic=lambda: clocks.mono, now=lambda: clocks.db)


def test_the_first_instance_leads_and_the_second_stands_by(store, clocks):
    a, b = member(store, clocks, "ws1", 11), member(store, clocks, "ws2", 22)
    assert a.try_lead() and a.role == "leader" and a.held()
    assert not b.try_lead() and b.role == "standby"
    clocks.advance(4)
    assert a.refresh()
    clocks.advance(4)  # 8 s after the start, but renewed at 4: still a's
    assert not b.try_lead()


def test_a_standby_takes_an_expired_lease_only_once_it_stayed_unrenewed(store, clocks):
    a, b = member(store, clocks, "ws1", 11), member(store, clocks, "ws2", 22)
    a.try_lead()
    clocks.advance(5.5)  # a stopped renewing: expired
    assert not a.held()
    assert not b.try_lead()  # seen expired: not yet
    clocks.advance(1)
    assert not b.try_lead()
    clocks.advance(1.1)  # 2.1 s after first seeing it expired, still unrenewed
    assert b.try_lead() and b.token == a.token + 1
    assert not a.refresh() and a.role != "leader"  # a wakes up: it has lost


def test_a_leader_cut_off_from_the_store_renews_first_and_keeps_its_place(store, clocks):
    """A PostgreSQL restart: both were cut off longer than the lease; the leader's
    renewal (a retry every second) comes before the standby's confirmation."""
    a, b = member(store, clocks, "ws1", 11), member(store, clocks, "ws2", 22)
    a.try_lead()
    clocks.advance(20)  # the database was away
    assert not b.try_lead()  # the standby sees it expired
    clocks.advance(1)
    assert a.refresh()  # the leader is back first
    clocks.advance(1.5)
    assert not b.try_lead()  # renewed since it looked: no takeover
    assert a.role == "leader"


def test_a_renewal_that_came_close_to_the_end_of_the_lease_says_what_held_it(
        store, clocks, caplog):
    a = member(store, clocks, "ws1", 11)
    a.try_lead()
    clocks.advance(1)
    assert a.refresh()
    assert "renewed late" not in caplog.text
    clocks.advance(3.5)  # the leader's loop was held: 2.5 s later than the 1 s it renews at
    assert a.refresh()
    [late] = [r.getMessage() for r in caplog.records if "renewed late" in r.getMessage()]
    assert "3.5 s into it: the loop was 2.5 s late to renew, the store took 0.0 s" in late

    renew = a.leases.renew

    def slow_store(*args):  # the UPDATE waited 2.8 s for a lock
        clocks.advance(2.8)
        return renew(*args)

    a.leases.renew = slow_store
    clocks.advance(1)
    assert a.refresh()
    late = [r.getMessage() for r in caplog.records if "renewed late" in r.getMessage()][-1]
    assert "3.8 s into it: the loop was 0.0 s late to renew, the store took 2.8 s" in late


def test_a_released_lease_is_taken_at_once(store, clocks):
    a, b = member(store, clocks, "ws1", 11), member(store, clocks, "ws2", 22)
    a.try_lead()
    a.release()
    assert b.try_lead()


def test_a_holder_whose_process_is_gone_on_this_host_is_replaced_at_once(store, clocks):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    gone = member(store, clocks, "ws1", int(dead.stdout))
    assert gone.try_lead()
    restarted = member(store, clocks, "ws1", 99999999)  # same host, new process
    assert restarted.try_lead()
    other_host = member(store, clocks, "ws2", 22)
    assert not other_host.try_lead()  # a pid on another host says nothing


def test_a_holder_in_another_pid_namespace_of_the_same_hostname_is_alive(store, clocks):
    """Two containers with one hostname: the other's pid means nothing here."""
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    container = member(store, clocks, "ws1", int(dead.stdout), space="other")
    assert container.try_lead()
    here_ = member(store, clocks, "ws1", 4242)
    assert not here_.try_lead()


def test_two_standbys_racing_for_one_lease_one_wins(store, clocks):
    a, b, c = (member(store, clocks, h, p) for h, p in (("ws1", 1), ("ws2", 2), ("ws3", 3)))
    a.try_lead()
    a.release()
    lease = b.leases.read()
    assert b.leases.acquire(b.me, 5.0, lease) is not None
    assert c.leases.acquire(c.me, 5.0, lease) is None  # the same row, already moved on


def transition(check_id: str, now: float) -> tuple[Transition, AlarmState]:
    tr = Transition(check_id=check_id, time=now, old=Severity.OK, new=Severity.MAJOR,
                    current=Severity.MAJOR, acked=False, value=1.0, message="high",
                    reason="evaluation")
    state = AlarmState(check_id=check_id, severity=Severity.MAJOR, current=Severity.MAJOR,
                       acked=False, since=now, message="high", value=1.0)
    return tr, state


def note(key: str, now: float) -> dict:
    return {"dedup_key": key, "kind": "alarm", "receiver": "channel:ops",
            "destination": "channel:ops", "message": {"text": key}, "created_at": now}


def test_an_instance_that_lost_the_lease_stores_no_decision_and_claims_nothing(tmp_path,
                                                                                clocks):
    url = f"sqlite:///{tmp_path / 'bw.db'}"
    store_a, store_b = Store(url), Store(url)  # two processes' connections
    a, b = member(store_a, clocks, "ws1", 11), member(store_b, clocks, "ws2", 22)
    store_a.fence, store_b.fence = a.fence, b.fence
    a.try_lead()
    store_a.record([transition("vac", clocks.db)], [note("n1", clocks.db)])
    clocks.advance(6)
    b.try_lead()
    clocks.advance(2.5)
    assert b.try_lead()  # b leads; a, frozen meanwhile, still thinks it does
    with pytest.raises(LeaseLost):
        store_a.record([transition("cryo", clocks.db)], [note("n2", clocks.db)])
    with pytest.raises(LeaseLost) as lost:
        Outbox(store_a, worker=a.me.id).claim(clocks.db + 10)
    assert is_transient(lost.value)  # the batch writer keeps it; stepping down drops it
    assert [r.transition.check_id for r in store_b.transitions()] == ["vac"]
    claimed = Outbox(store_b, worker=b.me.id).claim(clocks.db + 10)
    assert [o.dedup_key for o in claimed] == ["n1"]  # the new leader sends it, once
    store_a.close()
    store_b.close()


def test_a_store_without_a_leader_refuses_the_engine_s_writes(store, clocks):
    a = member(store, clocks, "ws1", 11)
    store.fence = a.fence
    with pytest.raises(LeaseLost):
        store.record([transition("vac", clocks.db)])
    assert store.transitions() == []


async def test_a_start_the_store_fails_under_stands_by_again_and_frees_the_lease(tmp_path):
    """The store goes away just as an instance takes the lead: it neither crashes nor
    keeps the lease; `beamwatch run` starts it again as the standby."""
    from sqlalchemy.exc import OperationalError

    from beamwatch.app import FAILED, App
    from beamwatch.sources.soft import SoftSource
    from beamwatch.store.lease import LeaseStore

    cfg = tmp_path / "bw.yaml"
    cfg.write_text(f"""
beamline: T
storage: {{url: "sqlite:///{tmp_path / 'bw.db'}"}}
web: {{listen: "off"}}
checks:
  - {{id: t, pv: "X:T", above: {{major: 1}}}}
""")
    app = App(cfg, sources={"ca": SoftSource("ca")})

    async def store_gone() -> None:
        raise OperationalError("SELECT", {}, Exception("server closed the connection"))

    app.engine.start = store_gone
    assert await app.run() == FAILED
    store = Store(f"sqlite:///{tmp_path / 'bw.db'}")
    assert LeaseStore(store).read().holder is None  # the other instance may take it now
    store.close()
