"""An HA pair: two `beamwatch run` processes on one PostgreSQL store (a private cluster
started here, so that it can be restarted), watching a real softIoc, paging a webhook.
Either member may die, hang or lose the database: faults page exactly once, repeats
and escalations come once, an ack through the survivor is announced once, and the
beamline log shows each transition once. The time to page after a kill, over many
kills, is measured by bench/ha_failover.py."""

from __future__ import annotations

import json
import time
import uuid

import pytest
from werkzeug import Response

from tests.support.ha_pair import CHECKS, DB, TOKEN, Pair, wait_quiet, write_config
from tests.support.pgcluster import private_cluster
from tests.support.waiting import wait_for


@pytest.fixture(scope="module")
def cluster():
    c = private_cluster()
    yield c
    c.close()


@pytest.fixture
def store_url(cluster):
    import psycopg

    name = f"ha_{uuid.uuid4().hex[:8]}"
    admin = cluster.url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return cluster.url.rsplit("/", 1)[0] + "/" + name


class Hook:
    """The webhook: every message, in order of arrival."""

    def __init__(self, httpserver):
        self.got: list[dict] = []
        self.at: list[float] = []  # monotonic arrival times, as `got`
        httpserver.expect_request("/hook", method="POST").respond_with_handler(self.handle)
        self.url = httpserver.url_for("/hook")

    def handle(self, request):
        self.got.append(json.loads(request.data))
        self.at.append(time.monotonic())
        return Response("ok")

    def times(self, check: str, kind: str) -> list[float]:
        return [t for t, m in zip(self.at, self.got, strict=True)
                if m["kind"] == kind and check in m["check_ids"]]

    def about(self, check: str, kind: str = "alarm") -> list[dict]:
        return [m for m in self.got if m["kind"] == kind and check in m["check_ids"]]


@pytest.fixture
def hook(httpserver):
    return Hook(httpserver)


@pytest.fixture
def pair(request, tmp_path, ioc_factory, hook, store_url):
    route_extra = getattr(request, "param", "")
    ioc = ioc_factory(DB)
    cfg = write_config(tmp_path / "ha.yaml", ioc, hook.url, store_url, route_extra)
    p = Pair(cfg, ioc, store_url, tmp_path)
    try:
        p.start()
    except AssertionError:
        print(p.close())
        raise
    yield p
    print(p.close())  # shown when the test fails


def logged(pair: Pair, check: str) -> list[str]:
    """The check's transitions in the beamline log (`beamwatch history --json`)."""
    out = pair.b.cli("history", "--json", "--check", check)
    assert out.returncode == 0, out.stderr
    return [f"{r['old']}->{r['new']}" for r in json.loads(out.stdout) if r["kind"] == "transition"]


def test_status_says_which_instance_does_what(pair):
    import httpx

    out = pair.b.cli("status")
    assert out.returncode == 0, out.stderr
    text = " ".join(out.stdout.split())
    assert "leader ws-a:" in text and "standby ws-b:" in text
    assert pair.a.url in text  # where the leader's web front end is
    health = httpx.get(f"{pair.b.url}/healthz")
    assert health.status_code == 200 and "standby" in health.json()["reason"]
    metrics = httpx.get(f"{pair.a.url}/metrics").text
    assert 'beamwatch_leader{beamline="HA"} 1.0' in metrics


def test_a_heartbeat_sent_to_the_standby_reaches_the_leader(pair):
    import httpx

    sent = httpx.post(f"{pair.b.url}/api/heartbeat/udc-queue", content="queue ok")
    assert sent.status_code == 307 and sent.headers["location"].startswith(pair.a.url)
    followed = httpx.post(f"{pair.b.url}/api/heartbeat/udc-queue", content="queue ok",
                          follow_redirects=True)  # curl -L
    assert followed.status_code == 200 and followed.json()["status"] == "accepted"
    wait_for(lambda: (pair.store.latest().get("udc-queue") or False) and
             pair.store.latest()["udc-queue"].message and
             "queue ok" in pair.store.latest()["udc-queue"].message, 20,
             "the beat's message in the leader's latest values")


def test_a_fault_right_after_the_leader_is_killed_pages_once(pair, hook):
    pair.a.kill()
    pair.set(1, 20)
    wait_for(lambda: hook.about("temp-1"), 30, "the standby's page")
    assert pair.holder() == "ws-b"
    wait_quiet(4)
    assert len(hook.about("temp-1")) == 1
    assert logged(pair, "temp-1") == ["OK->MAJOR"]


def test_a_frozen_leader_that_wakes_up_sends_nothing_twice(pair, hook):
    pair.set(1, 20)
    wait_for(lambda: hook.about("temp-1"), 20, "the leader's page")
    pair.a.freeze()  # SIGSTOP: alive, silent
    pair.set(2, 20)
    wait_for(lambda: hook.about("temp-2"), 30, "the standby taking over and paging")
    assert pair.holder() == "ws-b"
    pair.set(1, 1)  # temp-1 recovers while a is frozen: b resolves it
    wait_for(lambda: hook.about("temp-1", "resolve"), 20, "the resolve")
    time.sleep(max(0.0, 15 - 8))  # a stays frozen ~15 s in all
    pair.a.thaw()
    wait_for(lambda: pair.roles().get("ws-a") == "standby", 30, "ws-a standing by again")
    pair.set(3, 20)  # and the pair goes on, led by b
    wait_for(lambda: hook.about("temp-3"), 20, "a page after a woke up")
    wait_quiet(3)
    for check, kind in (("temp-1", "alarm"), ("temp-1", "resolve"), ("temp-2", "alarm"),
                        ("temp-3", "alarm")):
        assert len(hook.about(check, kind)) == 1, (check, kind, hook.got)
    assert logged(pair, "temp-1") == ["OK->MAJOR", "MAJOR->OK"]
    assert "lost the lease" in pair.a.log() or "not sending" in pair.a.log()


@pytest.mark.parametrize("pair", ["    repeat: 12s\n    escalate: {after: 20s, to: "
                                  "[channel:hook]}"], indirect=True)
def test_repeats_escalations_and_an_ack_through_the_survivor_come_once(pair, hook):
    pair.set(4, 20)
    wait_for(lambda: hook.about("temp-4"), 20, "the page")
    pair.a.kill()
    wait_for(lambda: hook.about("temp-4", "repeat"), 40, "the repeat, from the survivor")
    wait_for(lambda: hook.about("temp-4", "escalation"), 40, "the escalation")
    out = pair.b.cli("ack", "temp-4", "--as", "ana")
    assert out.returncode == 0, out.stdout + out.stderr
    wait_for(lambda: hook.about("temp-4", "ack"), 20, "the ack announced")
    acked = hook.times("temp-4", "ack")[0]
    wait_quiet(14)  # one more repeat period: an acked alarm repeats no more
    kinds = [m["kind"] for m in hook.got]
    assert len({m["id"] for m in hook.got}) == len(hook.got), kinds  # nothing sent twice
    for kind in ("alarm", "escalation", "ack"):
        assert len(hook.about("temp-4", kind)) == 1, (kind, kinds)
    repeats = hook.times("temp-4", "repeat")
    # each repeat once: one per 12 s period (not two instances' timers), none after the ack
    assert all(b - a > 8 for a, b in zip(repeats, repeats[1:], strict=False)), repeats
    assert all(t < acked for t in repeats), (repeats, acked)


def test_silences_and_acks_made_through_the_standby_hold_on_the_leader(pair, hook):
    import httpx

    answer = httpx.post(f"{pair.b.url}/api/silences",
                        headers={"Authorization": f"Bearer {TOKEN}"},
                        json={"matchers": ["temp-5"], "duration": "1h",
                              "reason": "sensor swap"})
    assert answer.status_code in (200, 201), answer.text
    time.sleep(2)  # the leader reads silences every second
    pair.set(5, 20)
    pair.set(6, 20)
    wait_for(lambda: hook.about("temp-6"), 20, "the unsilenced check's page")
    wait_quiet(2)
    assert hook.about("temp-5") == []  # silenced through the standby, honoured by the leader
    ack = httpx.post(f"{pair.b.url}/api/acks", headers={"Authorization": f"Bearer {TOKEN}"},
                     json={"check": "temp-6"})
    assert ack.status_code in (200, 201, 202), ack.text
    wait_for(lambda: hook.about("temp-6", "ack"), 20, "the ack, applied by the leader")
    wait_quiet(2)
    assert len(hook.about("temp-6", "ack")) == 1


def test_the_pair_recovers_from_a_postgresql_restart_losing_nothing(pair, hook, cluster):
    pair.set(1, 20)
    wait_for(lambda: hook.about("temp-1"), 20, "a page before the restart")
    cluster.stop("immediate")
    pair.set(2, 20)  # decided while the store is away
    time.sleep(3)
    cluster.start()
    wait_for(lambda: hook.about("temp-2"), 40, "the page decided during the outage")
    pair.set(3, 20)
    wait_for(lambda: hook.about("temp-3"), 30, "a page after the restart")
    wait_quiet(3)
    for check in ("temp-1", "temp-2", "temp-3"):
        assert len(hook.about(check)) == 1, (check, hook.got)
        assert logged(pair, check) == ["OK->MAJOR"], check
    roles = pair.roles()
    assert sorted(roles.values()) == ["leader", "standby"], roles
    assert set(CHECKS) <= set(pair.store.latest())
