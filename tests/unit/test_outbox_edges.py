"""Outbox edge cases (issue 12, items 5-8), on a real SQLite store with an in-memory
notifier: failures around a send are attempts, a slow send keeps its claim, a stop
gives back what it did not send, retention keeps what open incidents still need."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy.exc import OperationalError

from beamwatch.clock import FakeClock
from beamwatch.config.loader import parse_config
from beamwatch.engine.incidents import Incident, IncidentKind
from beamwatch.model import AlarmState, Severity, Transition
from beamwatch.notify.apprise_notifier import AppriseNotifier
from beamwatch.notify.base import Delivery, Message
from beamwatch.notify.registry import Registry
from beamwatch.notify.render import Renderer
from beamwatch.notify.slack import SlackNotifier
from beamwatch.notify.webhook import WebhookNotifier
from beamwatch.notify.worker import OutboxWorker
from beamwatch.store import Store
from beamwatch.store.noise import NoiseStore
from beamwatch.store.outbox import Outbox

CONFIG = parse_config("""
beamline: I04
channels:
  hook: {kind: webhook, webhook_url: "http://127.0.0.1:9/hook"}
routes:
  - to: [channel:hook]
""")
DEST = "channel:hook"


class Receiver:
    """The in-memory twin of a destination: keeps what it was sent; `hold()` makes
    every send wait until `release()` (a slow receiver, with no clock involved)."""

    kind = "webhook"
    destination = "memory"

    def __init__(self, name: str = DEST, worst_case: float = 30.0):
        self.name = name
        self.worst_case = worst_case
        self.sent: list[Message] = []
        self.started = asyncio.Event()
        self._open = asyncio.Event()
        self._open.set()

    def hold(self) -> None:
        self._open.clear()

    def release(self) -> None:
        self._open.set()

    async def send(self, message: Message) -> Delivery:
        self.started.set()
        await self._open.wait()
        self.sent.append(message)
        return Delivery.sent(detail="kept")

    async def aclose(self) -> None:
        return None


@pytest.fixture()
def store(tmp_path):
    s = Store(f"sqlite:///{tmp_path / 'bw.db'}")
    yield s
    s.close()


@pytest.fixture()
def clock():
    return FakeClock()


@pytest.fixture()
def receiver():
    return Receiver()


def worker(store, clock, receiver, name="worker-1", lease=60.0) -> OutboxWorker:
    registry = Registry({receiver.name: receiver}, {}, [], None)
    return OutboxWorker(CONFIG, store, registry, clock, name=name, lease=lease)


def row(clock, n: int, **extra) -> dict:
    message = Message(kind="alarm", beamline="I04", title=f"fault {n}",
                      severity=Severity.MAJOR, time=clock.now()).to_dict()
    return {"dedup_key": f"fault-{n}", "check_id": f"check-{n}", "kind": "alarm",
            "receiver": f"{DEST}#{n}", "destination": DEST, "message": message,
            "created_at": clock.now(), **extra}


async def deliver(w: OutboxWorker) -> None:
    while await w.run_once():
        await w.drain()
    await w.drain()


# -- item 5: every failure is an attempt; none loops ------------------------------------------


async def test_a_row_that_cannot_be_rendered_fails_for_good_with_the_reason(
        store, clock, receiver):
    bad = row(clock, 1)
    bad["message"] = {**bad["message"], "kind": "no-such-kind"}
    Outbox(store).queue([bad])
    w = worker(store, clock, receiver)
    given_up = []
    give_up = w._give_up
    w._give_up = lambda group, detail, now, **kw: (given_up.append(detail),
                                                   give_up(group, detail, now, **kw))
    await deliver(w)
    [r] = w.outbox.rows()
    assert r["status"] == "failed" and "cannot be rendered" in r["last_error"]
    assert "no-such-kind" in r["last_error"]
    [attempt] = w.outbox.attempts(r["id"])
    assert not attempt["ok"] and not attempt["retry"]
    assert len(given_up) == 1  # through the one place a row is given up on
    clock.advance(3600)
    assert await w.run_once() is False  # never claimed again
    assert receiver.sent == []


async def test_an_outcome_not_stored_after_a_send_is_stored_again_not_sent_again(
        store, clock, receiver, caplog):
    Outbox(store).queue([row(clock, 1)])
    w = worker(store, clock, receiver)
    finish, failures = w.outbox.finish, []

    def locked_once(*args, **kw):
        if not failures:
            failures.append(1)
            raise OperationalError("UPDATE notifications", {}, Exception("database is locked"))
        return finish(*args, **kw)

    w.outbox.finish = locked_once
    await deliver(w)
    [r] = w.outbox.rows()
    assert r["status"] == "sent" and len(w.outbox.attempts(r["id"])) == 1
    assert "the send happened" in caplog.text
    clock.advance(3600)  # far past any claim
    await deliver(worker(store, clock, receiver, name="worker-2"))
    assert len(receiver.sent) == 1


async def test_a_store_failure_before_the_send_is_an_attempt_and_tried_again(
        store, clock, receiver):
    Outbox(store).queue([row(clock, 1, kind="ack", incident_id="inc-1",
                             message={**row(clock, 1)["message"], "kind": "ack"})])
    w = worker(store, clock, receiver)
    sent_ref = w.outbox.sent_ref

    def down(*args):
        w.outbox.sent_ref = sent_ref
        raise OperationalError("SELECT ref", {}, Exception("server closed the connection"))

    w.outbox.sent_ref = down
    await deliver(w)
    [r] = w.outbox.rows()
    assert r["status"] == "pending" and "internal error before sending" in r["last_error"]
    assert len(w.outbox.attempts(r["id"])) == 1 and receiver.sent == []
    clock.advance(600)
    await deliver(w)
    assert [m.kind for m in receiver.sent] == ["ack"]
    assert w.outbox.rows()[0]["status"] == "sent"


# -- item 6: the claim covers the destination's worst case ----------------------------------


async def test_a_send_longer_than_the_claim_lease_is_not_claimed_again(store, clock, receiver):
    Outbox(store).queue([row(clock, 1)])
    a = worker(store, clock, receiver, name="worker-a", lease=1.0)
    b = worker(store, clock, receiver, name="worker-b", lease=1.0)
    receiver.hold()
    assert await a.run_once()
    await receiver.started.wait()
    clock.advance(10)  # the send has run 10 lease lengths; the receiver has 30 s
    assert await b.run_once() is False
    receiver.release()
    await a.drain()
    clock.advance(3600)
    await deliver(b)
    assert len(receiver.sent) == 1


def test_worst_case_covers_what_a_send_can_leave_running():
    renderer = Renderer()
    slack = SlackNotifier("channel:s", "xoxb-1", "#ops", renderer=renderer, timeout=10)
    apprise = AppriseNotifier("channel:a", "json://127.0.0.1:9/", renderer=renderer,
                              timeout=10)
    hook = WebhookNotifier("channel:h", "http://127.0.0.1:9/", renderer=renderer, timeout=10)
    # Slack: three calls within 31 s, and the one in flight may connect and read on
    assert slack.worst_case == 31 + 20
    assert apprise.worst_case == 21 + 20
    assert hook.worst_case == hook.deadline == 10  # async: cancelled at the deadline


# -- item 7: a stop finishes what it started and gives back the rest -------------------------


async def test_a_stop_gives_back_the_rows_it_claimed_but_did_not_send(store, clock, receiver):
    Outbox(store).queue([row(clock, 1), row(clock, 2)])
    w = worker(store, clock, receiver)
    assert await w.run_once()  # claimed; the stop comes before any send starts
    await w.shutdown(grace=5)
    rows = w.outbox.rows()
    assert [(r["status"], r["claimed_by"], r["attempts"]) for r in rows] == \
        [("pending", None, 0)] * 2
    assert receiver.sent == []
    await deliver(worker(store, clock, receiver))  # the restart, at the same moment
    assert sorted(m.title for m in receiver.sent) == ["fault 1", "fault 2"]


async def test_a_send_cut_by_the_grace_is_an_interrupted_attempt_sent_again_at_once(
        store, clock, receiver):
    Outbox(store).queue([row(clock, 1)])
    w = worker(store, clock, receiver)
    receiver.hold()
    assert await w.run_once()
    await receiver.started.wait()
    await w.shutdown(grace=0.01)
    [r] = w.outbox.rows()
    assert r["status"] == "pending" and r["claimed_by"] is None
    assert "interrupted" in r["last_error"] and r["attempts"] == 1
    receiver.release()
    await deliver(worker(store, clock, receiver))
    assert [m.title for m in receiver.sent] == ["fault 1"]


# -- item 8: retention keeps what an open incident still needs --------------------------------


def incident(iid: str, opened: float, resolved: float | None = None) -> Incident:
    return Incident(id=iid, kind=IncidentKind.CHECK, root=f"check-{iid}", opened=opened,
                    severity=Severity.MAJOR, consequences=(), failing=(f"check-{iid}",),
                    resolved=resolved)


def test_purge_keeps_every_row_of_an_incident_still_open(store, clock):
    t0 = clock.now()
    ns, box = NoiseStore(store), Outbox(store)
    ns.save_incidents([incident("open", t0), incident("over", t0, resolved=t0 + 60)], t0)
    for n, iid in enumerate(("open", "over", None)):
        tr = Transition(f"check-{iid}", t0, Severity.OK, Severity.MAJOR, Severity.MAJOR,
                        False, 1.0, "", "alarm", incident_id=iid)
        state = AlarmState(f"check-{iid}", Severity.MAJOR, Severity.MAJOR, False, since=t0)
        store.record([(tr, state)], [{**row(clock, n), "incident_id": iid}])
    w_rows = box.rows()
    box.finish([r["id"] for r in w_rows], t0, status="sent", ok=True)
    before = t0 + 30 * 86400
    store.purge(before)
    ns.purge(before)
    assert [r["incident_id"] for r in box.rows()] == ["open"]
    assert [tr.transition.incident_id for tr in store.transitions()] == ["open"]
    assert box.told("open") == [(f"{DEST}#0", DEST, None)]
    assert [i.id for i in ns.open_incidents()] == ["open"]
