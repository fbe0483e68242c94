"""Acceptance: the simulated MX beamline (real IOCs) watched by `beamwatch run` with the
demo config — one fault pages one person once, naming the root cause."""

from __future__ import annotations

import json
import time

import pytest

from tests.support.demo_run import Receivers, Watch
from tests.support.waiting import wait_for


@pytest.fixture
def watch(sim, httpserver, tmp_path):
    receivers = Receivers(httpserver)
    w = Watch(sim, receivers, tmp_path)
    receivers.got.clear()  # whatever settling at start-up said is not part of the test
    w.receivers = receivers
    yield w
    w.stop()
    sim.clear()


def test_front_end_vacuum_loss_pages_once_with_its_consequences(sim, watch):
    sim.fault("vacuum-loss")
    wait_for(lambda: watch.receivers.alarms(), 60, "a page")
    time.sleep(15)  # more than the settle time: every consequence has been decided
    [page] = watch.receivers.alarms("/channel/ops")
    assert page["title"] == "Front-end vacuum (interlock gauge)"
    assert len(page["consequences"]) >= 40
    [team] = json.loads(watch.cli("oncall", "--json", "--team", "mx-support").stdout)["teams"]
    assert team["person"] == "ana"  # the pinned rota, as beamwatch itself reports it
    assert len(watch.receivers.alarms("/person/ana")) == 1  # the on-call person, once
    assert watch.receivers.alarms("/person/ben") == []  # and nobody else
    failing = [c for c in json.loads(watch.cli("status", "--json").stdout)["checks"]
               if c["severity"] != "OK"]
    assert len(failing) >= 40
    muted = [c for c in failing if c["muted"] == "DEPENDENCY"]
    assert len(muted) >= 40 and all("fe-vacuum" in c["mute_detail"] or "Front-end" in
                                    c["mute_detail"] for c in muted)


def test_a_dead_ioc_is_one_incident_not_one_per_pv(sim, watch):
    t0 = time.monotonic()
    sim.fault("ioc-down", ioc="endstation")
    wait_for(lambda: watch.receivers.alarms(after=t0), 60, "a page")
    time.sleep(15)
    pages = watch.receivers.alarms("/channel/ops", after=t0)
    assert len(pages) == 1, [p["title"] for p in pages]
    assert len(pages[0]["consequences"]) >= 20


def test_a_5s_spike_under_its_for_delay_pages_nobody(sim, watch):
    sim.fault("spike")
    time.sleep(25)
    assert watch.receivers.got == []


def test_silence_expiring_while_the_fault_persists_notifies_then_once(sim, watch):
    done = watch.cli("silence", "group=cryo", "--for", "45s", "--reason", "refilling",
                     "--as", "ana")
    assert done.returncode == 0, done.stderr
    time.sleep(5)  # the engine mirrors silences from the store on its next tick
    sim.fault("cryojet-warming")
    time.sleep(25)
    assert watch.receivers.alarms() == []  # silenced
    wait_for(lambda: watch.receivers.alarms(), 60, "the page once the silence ends")
    time.sleep(10)
    pages = watch.receivers.alarms("/channel/ops")
    assert len(pages) == 1 and pages[0]["labels"] is not None


def test_ring_dump_pages_once_and_nobody_in_shutdown(sim, watch):
    sim.fault("ring-dump")
    wait_for(lambda: watch.receivers.alarms(), 60, "a page")
    time.sleep(12)
    [page] = watch.receivers.alarms("/channel/ops")
    assert page["check_ids"] == ["ring-current"]
    sim.clear()
    wait_for(lambda: watch.store.state("ring-current").current == 0, 90, "beam back")

    done = watch.cli("mode", "set", "shutdown", "--for", "1h", "--reason", "shutdown week",
                     "--as", "ana")
    assert done.returncode == 0, done.stderr
    time.sleep(5)  # the engine picks the override up on its next tick
    before = len(watch.receivers.alarms())
    sim.fault("ring-dump")
    wait_for(lambda: (watch.store.state("ring-current") or None)
             and watch.store.state("ring-current").severity > 0, 60, "ring-current alarm")
    time.sleep(12)
    assert len(watch.receivers.alarms()) == before  # logged, nobody paged
    [last] = watch.store.transitions(check_id="ring-current")[-1:]
    assert last.transition.muted is not None and last.transition.muted.value == "MODE"
