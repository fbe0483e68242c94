"""Outbox edge cases against a real HTTP receiver on loopback and a real SQLite store
(issue 12, items 6-8): a slow receiver is sent each message once, whatever the claim
lease and however many workers; a stop in the middle of a send leaves every message
delivered exactly once after the restart; retention keeps an open incident's rows."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import Counter

import pytest
from pytest_httpserver import HTTPServer
from support.timeline import Timeline
from werkzeug import Request, Response

from beamwatch.clock import FakeClock
from beamwatch.config.loader import parse_config
from beamwatch.engine.incidents import Incident, IncidentKind
from beamwatch.model import Severity
from beamwatch.notify.base import Message
from beamwatch.notify.registry import build_registry
from beamwatch.notify.worker import OutboxWorker
from beamwatch.store import Store
from beamwatch.store.noise import NoiseStore
from beamwatch.store.outbox import Outbox

pytestmark = pytest.mark.integration

WAIT = 10.0  # the most a test waits for the receiver before calling it a failure


class SlowReceiver:
    """A webhook receiver that keeps each message it accepts, by outbox id. While
    held, a request waits in the handler until released (or `delay` seconds)."""

    def __init__(self, server: HTTPServer, delay: float | None = None):
        self.accepted: list[str] = []
        self.arrived = threading.Event()
        self.released = threading.Event()
        self.delay = delay
        if delay is None:
            self.released.set()
        server.expect_request("/hook", method="POST").respond_with_handler(self._handle)

    def hold(self) -> None:
        self.released.clear()

    def _handle(self, request: Request) -> Response:
        self.arrived.set()
        if self.delay is not None:
            time.sleep(self.delay)  # a slow receiver, not a clock: nothing asserts on it
        else:
            self.released.wait(WAIT)
        self.accepted.append(json.loads(request.data)["id"])
        return Response("ok")

    async def wait_for_a_request(self) -> None:
        assert await asyncio.to_thread(self.arrived.wait, WAIT), "no request arrived"


@pytest.fixture()
def outbox_setup(tmp_path, httpserver):
    config = parse_config(f"""
beamline: I04
storage: {{url: "sqlite:///{tmp_path / 'bw.db'}"}}
channels:
  hook: {{kind: webhook, webhook_url: "{httpserver.url_for('/hook')}", timeout: 20s}}
routes:
  - to: [channel:hook]
""")
    store = Store(config.storage.url)
    yield config, store, FakeClock()
    store.close()


def queue(store: Store, clock: FakeClock, *titles: str, incident: str | None = None) -> None:
    Outbox(store).queue([{
        "dedup_key": title, "check_id": title, "kind": "alarm", "receiver": f"r-{title}",
        "incident_id": incident,
        "destination": "channel:hook", "created_at": clock.now(),
        "message": Message(kind="alarm", beamline="I04", title=title,
                           severity=Severity.MAJOR, time=clock.now()).to_dict(),
    } for title in titles])


async def test_a_receiver_slower_than_the_lease_gets_the_message_once(outbox_setup, httpserver):
    config, store, clock = outbox_setup
    receiver = SlowReceiver(httpserver)
    receiver.hold()
    queue(store, clock, "dcm-temp")
    registry = build_registry(config)
    first = OutboxWorker(config, store, registry, clock, name="node-a", lease=2.0)
    second = OutboxWorker(config, store, registry, clock, name="node-b", lease=2.0)
    try:
        assert await first.run_once()
        await receiver.wait_for_a_request()
        clock.advance(15)  # the send outlives its claim lease 7 times over (timeout: 20 s)
        assert await second.run_once() is False
    finally:
        receiver.released.set()
    await first.drain()
    await second.drain()
    clock.advance(3600)
    while await second.run_once():
        await second.drain()
    await registry.aclose()
    [row] = Outbox(store).rows()
    assert receiver.accepted == [str(row["id"])]
    assert row["status"] == "sent" and row["attempts"] == 1


async def run_and_stop(worker: OutboxWorker, receiver: SlowReceiver) -> None:
    """What `App.run` does on SIGTERM: set the stop event, cancel the worker's task."""
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop, poll=0.05))
    await receiver.wait_for_a_request()
    stop.set()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_sigterm_during_a_slow_send_finishes_it_and_the_restart_sends_nothing_twice(
        outbox_setup, httpserver):
    config, store, clock = outbox_setup
    receiver = SlowReceiver(httpserver, delay=0.5)
    queue(store, clock, "dcm-temp")
    registry = build_registry(config)
    await run_and_stop(OutboxWorker(config, store, registry, clock), receiver)
    await registry.aclose()
    [row] = Outbox(store).rows()
    assert row["status"] == "sent"  # recorded before the worker let the app close
    restarted = build_registry(config)
    again = OutboxWorker(config, store, restarted, clock)
    while await again.run_once():
        await again.drain()
    await restarted.aclose()
    assert receiver.accepted == [str(row["id"])]


async def test_stop_mid_send_each_message_delivered_exactly_once_after_restart(
        outbox_setup, httpserver):
    config, store, clock = outbox_setup
    receiver = SlowReceiver(httpserver)
    receiver.hold()
    registry = build_registry(config)
    worker = OutboxWorker(config, store, registry, clock)
    queue(store, clock, "dcm-temp")
    try:
        assert await worker.run_once()
        await receiver.wait_for_a_request()  # the first is being sent, slowly
        queue(store, clock, "fe-vacuum", "ring-current")
        assert await worker.run_once()  # these two are claimed; SIGTERM comes now
        stopping = asyncio.create_task(worker.shutdown(grace=WAIT))
        await asyncio.sleep(0)
    finally:
        receiver.released.set()
    await stopping
    await registry.aclose()
    rows = {r["check_id"]: r for r in Outbox(store).rows()}
    assert rows["dcm-temp"]["status"] == "sent"
    for name in ("fe-vacuum", "ring-current"):  # given back unsent: due at once
        assert (rows[name]["status"], rows[name]["claimed_by"]) == ("pending", None)
    restarted = build_registry(config)
    again = OutboxWorker(config, store, restarted, clock)  # same moment: no lease to wait
    while await again.run_once():
        await again.drain()
    await restarted.aclose()
    ids = sorted(str(r["id"]) for r in rows.values())
    assert sorted(receiver.accepted) == ids
    assert Counter(receiver.accepted).most_common(1)[0][1] == 1


RETAINED = """
beamline: I04
storage: {url: "sqlite:///{db}", retention: 1h}
channels:
  hook: {kind: webhook, webhook_url: "{hook}hook"}
checks:
  - id: dcm-temp
    pv: BL04I-MO-DCM-01:TEMP1
    above: {minor: 120, major: 140}
routes:
  - to: [channel:hook]
"""


async def test_an_ack_of_an_incident_open_longer_than_retention_reaches_those_told(
        tmp_path, httpserver):
    async with Timeline(tmp_path, RETAINED, httpserver) as tl:
        tl.set("BL04I-MO-DCM-01:TEMP1", 150.0)
        await tl.run_until(10)
        tl.clock.advance(3 * 3600)  # still hot, three retention periods later
        await tl.app.step()
        await tl.app._purge()
        tl.app.engine.acknowledge("dcm-temp", "ana")
        await tl.run_until(tl.now + 5)
    dcm = [m.body for m in tl.messages() if m.body["check_ids"] == ["dcm-temp"]]
    assert [m["kind"] for m in dcm] == ["alarm", "ack"]
    assert dcm[1]["actor"] == "ana"


def test_on_postgresql_a_held_claim_stays_and_an_open_incident_outlives_retention(pg_url):
    store, clock = Store(pg_url), FakeClock()
    try:
        t0 = clock.now()
        NoiseStore(store).save_incidents(
            [Incident("inc-1", IncidentKind.CHECK, "dcm-temp", t0, Severity.MAJOR)], t0)
        queue(store, clock, "dcm-temp", incident="inc-1")
        queue(store, clock, "long-over")
        a, b = Outbox(store, "node-a", lease=1.0), Outbox(store, "node-b", lease=1.0)
        claimed = a.claim(t0)
        assert a.hold(claimed, t0 + 60) == [o.id for o in claimed]
        assert b.claim(t0 + 30) == []  # past the claim lease, within the held one
        a.finish([o.id for o in claimed], t0, status="sent", ok=True)
        store.purge(t0 + 30 * 86400)
        assert [r["dedup_key"] for r in Outbox(store).rows()] == ["dcm-temp"]
    finally:
        store.close()
