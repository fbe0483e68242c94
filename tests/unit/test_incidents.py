"""Incidents: one fault opens one incident; consequences attach; promotion; IOC grouping."""

import itertools

import pytest

from beamwatch.engine.deps import DependencyGraph
from beamwatch.engine.incidents import (
    PAGING_EVENTS,
    ConsequenceAttached,
    ConsequenceCleared,
    ConsequencePromoted,
    IncidentEscalated,
    IncidentKind,
    IncidentOpened,
    IncidentReopened,
    IncidentResolved,
    IncidentTracker,
)
from beamwatch.model import Severity

OK, MINOR, MAJOR, INVALID = Severity.OK, Severity.MINOR, Severity.MAJOR, Severity.INVALID


def tracker(deps=None, **kw):
    counter = itertools.count(1)
    return IncidentTracker(DependencyGraph(deps or {}, settle=10),
                           id_factory=lambda root, t: f"i{next(counter)}", **kw)


def kinds(events):
    return [type(e).__name__ for e in events]


def pages(events):
    return [e for e in events if isinstance(e, PAGING_EVENTS)]


def run(t, steps):
    """Feed (time, check, severity) steps, ticking each second; return every event."""
    out = []
    steps = sorted(steps, key=lambda s: s[0])
    end = int(steps[-1][0]) + 60
    i = 0
    for now in range(int(steps[0][0]), end + 1):
        while i < len(steps) and steps[i][0] <= now:
            at, check, sev = steps[i]
            out += t.update(check, sev, at)
            i += 1
        out += t.tick(now)
    return out


def test_vacuum_loss_with_forty_dependents_is_one_incident_with_forty_consequences():
    deps = {f"dep-{i:02d}": ["fe-vacuum"] for i in range(40)}
    t = tracker(deps)
    steps = [(100, "fe-vacuum", MAJOR)] + [(100 + 0.1 * i, f"dep-{i:02d}", MAJOR)
                                           for i in range(40)]
    events = run(t, steps)
    assert kinds(pages(events)) == ["IncidentOpened"]
    [inc] = t.open_incidents()
    assert inc.root == "fe-vacuum"
    assert len(inc.consequences) == 40
    assert inc.summary == "root cause: fe-vacuum; also affected: 40"
    assert sum(isinstance(e, ConsequenceAttached) for e in events) == 40
    assert t.root_of("dep-07") == "fe-vacuum" and t.root_of("fe-vacuum") is None


def test_consequences_first_then_root_within_settle_are_attributed():
    t = tracker({"fe-shutter": ["fe-vacuum"], "detector": ["fe-shutter"]})
    events = run(t, [(100, "detector", MAJOR), (101, "fe-shutter", MAJOR),
                     (107, "fe-vacuum", MAJOR)])
    [opened] = pages(events)
    assert isinstance(opened, IncidentOpened)
    assert opened.incident.root == "fe-vacuum"
    assert set(opened.incident.consequences) == {"fe-shutter", "detector"}


def test_held_consequences_are_folded_into_the_opening_page():
    # the root itself has an upstream check, so it is held too; everything settles at once
    t = tracker({"fe-vacuum": ["ring-current"], "fe-shutter": ["fe-vacuum"]})
    assert t.update("fe-shutter", MAJOR, 100) == []
    assert t.update("fe-vacuum", MAJOR, 101) == []
    assert t.is_held("fe-shutter") and t.is_held("fe-vacuum")
    assert t.tick(110) == []  # fe-shutter's time is up, but its root is still held
    events = t.tick(111)
    assert kinds(events) == ["IncidentOpened"]
    assert events[0].incident.consequences == ("fe-shutter",)
    assert not t.is_held("fe-shutter")


def test_root_too_late_means_two_incidents():
    t = tracker({"fe-shutter": ["fe-vacuum"]})
    events = run(t, [(100, "fe-shutter", MAJOR), (130, "fe-vacuum", MAJOR)])
    assert [e.incident.root for e in pages(events)] == ["fe-shutter", "fe-vacuum"]


def test_blip_shorter_than_settle_pages_nobody():
    t = tracker({"fe-shutter": ["fe-vacuum"]})
    assert run(t, [(100, "fe-shutter", MAJOR), (103, "fe-shutter", OK)]) == []


def test_diamond_attaches_once():
    t = tracker({"shutter": ["vacuum"], "valve": ["vacuum"], "sample": ["shutter", "valve"]})
    events = run(t, [(0, "vacuum", MAJOR), (1, "shutter", MAJOR), (1, "valve", MAJOR),
                     (2, "sample", MAJOR)])
    [inc] = t.open_incidents()
    assert sorted(inc.consequences) == ["sample", "shutter", "valve"]
    assert len(pages(events)) == 1


def test_redundancy_one_cryocooler_down_is_its_own_incident_both_down_is_one():
    t = tracker({"dcm": [["cc-a", "cc-b"]]})
    events = run(t, [(0, "cc-a", MAJOR), (2, "dcm", MAJOR)])
    assert [e.incident.root for e in pages(events)] == ["cc-a", "dcm"]

    t = tracker({"dcm": [["cc-a", "cc-b"]]})
    events = run(t, [(0, "cc-a", MAJOR), (1, "cc-b", MAJOR), (2, "dcm", MAJOR)])
    roots = [e.incident.root for e in pages(events)]
    assert roots == ["cc-a", "cc-b"]  # two independent faults; dcm is their consequence
    assert t.incident_of("dcm").root == "cc-a"


def test_root_recovers_while_consequence_still_failing_is_promoted_after_grace():
    t = tracker({"shutter": ["vacuum"], "detector": ["vacuum"]}, recovery_grace=30)
    run(t, [(0, "vacuum", MAJOR), (1, "shutter", MAJOR), (1, "detector", MAJOR)])
    [inc] = t.open_incidents()
    events = t.update("vacuum", OK, 100)
    [resolved] = events
    assert isinstance(resolved, IncidentResolved)
    assert resolved.incident.resolved == 100
    assert set(resolved.incident.failing) == {"shutter", "detector"}
    assert t.tick(110) == []
    assert t.update("detector", OK, 120) == []  # recovered within the grace: nothing to say
    [promoted] = t.tick(130)
    assert isinstance(promoted, ConsequencePromoted)
    assert (promoted.check_id, promoted.from_incident) == ("shutter", inc.id)
    assert promoted.incident.root == "shutter"
    assert promoted.incident.promoted_from == inc.id
    assert t.update("shutter", OK, 200)[0].incident.resolved == 200


def test_promotion_keeps_a_chain_together():
    t = tracker({"shutter": ["vacuum"], "detector": ["shutter"]}, recovery_grace=5)
    run(t, [(0, "vacuum", MAJOR), (1, "shutter", MAJOR), (2, "detector", MAJOR)])
    t.update("vacuum", OK, 100)
    events = t.tick(105)
    assert kinds(events) == ["ConsequencePromoted"]
    assert events[0].incident.root == "shutter"
    assert events[0].incident.consequences == ("detector",)


def test_orphan_reattaches_to_another_open_root():
    t = tracker({"sample": ["vacuum", "ring"]}, recovery_grace=5)
    run(t, [(0, "vacuum", MAJOR), (0.5, "ring", MAJOR), (1, "sample", MAJOR)])
    assert t.incident_of("sample").root == "vacuum"
    t.update("vacuum", OK, 100)
    [attached] = t.tick(105)
    assert isinstance(attached, ConsequenceAttached)
    assert attached.incident.root == "ring"


def test_consequence_clearing_and_escalation():
    t = tracker({"shutter": ["vacuum"]})
    run(t, [(0, "vacuum", MINOR), (1, "shutter", MINOR)])
    [esc] = t.update("shutter", MAJOR, 70)
    assert isinstance(esc, IncidentEscalated) and (esc.old, esc.new) == (MINOR, MAJOR)
    [cleared] = t.update("shutter", OK, 80)
    assert isinstance(cleared, ConsequenceCleared)
    assert cleared.incident.consequences == ("shutter",) and cleared.incident.failing == ()


def ioc_steps(n, server="vac-ioc:5064", start=1000.0, spread=2.0):
    return [(start + spread * i / n, f"gauge-{i:02d}", server) for i in range(n)]


def test_twenty_pvs_of_one_ioc_disconnecting_within_two_seconds_is_one_ioc_incident():
    t = tracker({"fe-shutter": ["gauge-00"]})
    events = []
    for at, check, server in ioc_steps(20):
        events += t.update(check, INVALID, at, server=server, disconnected_at=at - 0.5)
        events += t.tick(at)
    events += t.update("fe-shutter", MAJOR, 1003)
    for now in range(1003, 1030):
        events += t.tick(now)
    assert kinds(pages(events)) == ["IncidentOpened"]
    [inc] = t.open_incidents()
    assert inc.kind == IncidentKind.IOC and inc.root == "ioc:vac-ioc:5064"
    assert inc.title == "IOC vac-ioc:5064 unreachable (20 PVs)"
    assert "fe-shutter" in inc.consequences  # downstream of a PV of the dead IOC
    assert t.root_of("gauge-03") == "IOC vac-ioc:5064 unreachable (20 PVs)"

    # the IOC comes back; one gauge reads a bad value: it outlives the IOC incident
    events = t.update("fe-shutter", OK, 1999)
    for at, check, _ in ioc_steps(20, start=2000):
        sev = MAJOR if check == "gauge-05" else OK
        events += t.update(check, sev, at)
    resolved = [e for e in events if isinstance(e, IncidentResolved)]
    assert len(resolved) == 1 and resolved[0].incident.failing == ("gauge-05",)
    [promoted] = t.tick(2100)
    assert promoted.incident.root == "gauge-05"


def test_a_few_disconnects_are_not_an_ioc_incident():
    t = tracker()
    events = []
    for at, check, server in ioc_steps(3):
        events += t.update(check, INVALID, at, server=server, disconnected_at=at)
    for now in range(1000, 1020):
        events += t.tick(now)
    assert [e.incident.root for e in pages(events)] == ["gauge-00", "gauge-01", "gauge-02"]


def test_disconnects_spread_wider_than_the_window_are_not_clustered():
    t = tracker(ioc_min=5, ioc_window=5)
    events = []
    for at, check, server in ioc_steps(6, spread=60):
        events += t.update(check, INVALID, at, server=server, disconnected_at=at)
        events += t.tick(at + 6)
    assert all(e.incident.kind == IncidentKind.CHECK for e in pages(events))
    assert len(pages(events)) == 6


@pytest.mark.parametrize("late", [0.0, 3.0])
def test_late_disconnect_joins_the_open_ioc_incident(late):
    t = tracker()
    for at, check, server in ioc_steps(5):
        t.update(check, INVALID, at, server=server, disconnected_at=at)
    events = t.update("gauge-99", INVALID, 1010 + late, server="vac-ioc:5064",
                      disconnected_at=1009)
    events += t.tick(1030)
    assert kinds(events) == ["ConsequenceAttached"]
    assert events[0].incident.title == "IOC vac-ioc:5064 unreachable (6 PVs)"


def test_root_bouncing_within_the_grace_reopens_the_same_incident_without_a_page():
    t = tracker({"shutter": ["vacuum"], "detector": ["vacuum"]}, recovery_grace=30)
    run(t, [(0, "vacuum", MAJOR), (1, "shutter", MAJOR), (1, "detector", MAJOR)])
    [inc] = t.open_incidents()
    t.update("vacuum", OK, 100)
    t.update("detector", OK, 101)
    [reopened] = t.update("vacuum", MAJOR, 105)
    assert isinstance(reopened, IncidentReopened)
    assert reopened.incident.id == inc.id and reopened.incident.resolved is None
    assert reopened.incident.failing == ("shutter",)
    assert not isinstance(reopened, PAGING_EVENTS)
    assert t.tick(200) == []  # shutter belongs to the incident again: never promoted
    # after the grace a new failure is a new incident
    t.update("vacuum", OK, 300)
    t.update("shutter", OK, 300)
    [opened] = t.update("vacuum", MAJOR, 400)
    assert isinstance(opened, IncidentOpened) and opened.incident.id != inc.id


def test_ioc_dropping_again_within_the_grace_reopens_the_ioc_incident():
    t = tracker(recovery_grace=30)
    for at, check, server in ioc_steps(6):
        t.update(check, INVALID, at, server=server, disconnected_at=at)
    [inc] = t.open_incidents()
    for at, check, _ in ioc_steps(6, start=1100):
        t.update(check, OK, at)
    assert t.open_incidents() == []
    events = []
    for at, check, server in ioc_steps(6, start=1110):
        events += t.update(check, INVALID, at, server=server, disconnected_at=at)
    assert kinds(events) == ["IncidentReopened", "ConsequenceAttached"]
    assert events[0].incident.id == inc.id
    assert t.open_incidents()[0].title == "IOC vac-ioc:5064 unreachable (6 PVs)"


def test_restore_after_a_restart_pages_nobody_twice():
    from beamwatch.engine.incidents import FailingCheck

    deps = {"shutter": ["vacuum"], "detector": ["vacuum"], "sample": ["shutter"]}
    before = tracker(deps)
    run(before, [(0, "vacuum", MAJOR), (1, "shutter", MAJOR), (1, "detector", MAJOR)])
    [inc] = before.open_incidents()

    after = tracker(deps)
    failing = {c: FailingCheck(MAJOR, 0 if c == "vacuum" else 1)
               for c in ("vacuum", "shutter", "detector")}
    failing["sample"] = FailingCheck(MAJOR, 200)  # failed while beamwatch was down
    events = after.restore([inc], failing, now=300)
    assert kinds(events) == ["ConsequenceAttached"]
    assert after.incident_of("sample").id == inc.id
    assert after.incident_of("shutter").id == inc.id
    assert after.update("vacuum", OK, 400)[0].incident.id == inc.id

    # the root recovered while beamwatch was down: resolved on restore, the rest wait
    again = tracker(deps, recovery_grace=30)
    events = again.restore([inc], {"shutter": FailingCheck(MAJOR, 1)}, now=300)
    assert kinds(events) == ["IncidentResolved"]
    assert kinds(again.tick(330)) == ["ConsequencePromoted"]
