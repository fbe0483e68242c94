"""`count: {times, within}` in the alarm logic (Phoebus's alarm count): a fake clock,
the samples a PV would send, the transitions people would be told about."""

import pytest

from beamwatch.engine.alarm import COMMIT_RULES, AlarmLogic, _commits
from beamwatch.engine.flapping import FlapDetector
from beamwatch.model import Evaluation, Severity

OK, MINOR, MAJOR = Severity.OK, Severity.MINOR, Severity.MAJOR


def run(logic, samples, until=None):
    """Feed (time, severity) samples, ticking every second between them as the engine
    does; the transitions (time, old, new), in order."""
    out, t = [], 0.0
    end = until if until is not None else (samples[-1][0] if samples else 0)
    queue = list(samples)
    while t <= end:
        while queue and queue[0][0] <= t:
            at, sev = queue.pop(0)
            out += logic.evaluate(Evaluation(sev, "m", 1.0, at), at)
        out += logic.tick(t)
        t += 1.0
    return [(tr.time, tr.old, tr.new) for tr in out]


def blips(times, every=10.0, length=2.0, start=0.0, sev=MAJOR):
    """`times` short departures from OK, each `length` s long, one every `every` s."""
    out = []
    for i in range(times):
        t = start + i * every
        out += [(t, sev), (t + length, OK)]
    return out


# (name, for:, count, samples, until, expected transitions)
CASES = [
    ("short blips never alarm with for: alone", 30, None, blips(3), 100, []),
    ("3rd blip within 60s alarms at once", 30, (3, 60), blips(3), 100,
     [(20, OK, MAJOR), (52, MAJOR, OK)]),
    ("2 blips are not enough", 30, (3, 60), blips(2), 100, []),
    ("blips spread wider than the window do not add up", 30, (3, 60),
     blips(3, every=40), 200, []),
    ("a long departure still alarms after for:", 30, (3, 60), [(0, MAJOR)], 100,
     [(30, OK, MAJOR)]),
    ("count without for: waits the window for one long departure", 0, (3, 60),
     [(0, MAJOR)], 100, [(60, OK, MAJOR)]),
    ("count without for: clears at once", 0, (3, 60),
     blips(3), 100, [(20, OK, MAJOR), (22, MAJOR, OK)]),
    ("a minor-major wobble is one departure", 30, (2, 60),
     [(0, MINOR), (1, MAJOR), (2, MINOR), (3, OK)], 100, []),
]


@pytest.mark.parametrize("name,delay,count,samples,until,expected", CASES,
                         ids=[c[0] for c in CASES])
def test_count_table(name, delay, count, samples, until, expected):
    assert run(AlarmLogic("x", delay=delay, count=count), samples, until) == expected


def test_the_commit_table_covers_every_case_once():
    for raising in (False, True):
        for held in (False, True):
            for counted in (False, True):
                matches = [r for r in COMMIT_RULES if r[0] in (None, raising)
                           and r[1] == held and r[2] in (None, counted)]
                assert len(matches) == 1, (raising, held, counted)
    assert _commits(True, False, True) and not _commits(False, False, True)


def test_departures_while_in_alarm_do_not_count_towards_the_next():
    logic = AlarmLogic("x", delay=30, count=(3, 60))
    got = run(logic, blips(3) + [(25, MAJOR), (26, OK), (27, MAJOR), (28, OK)], 100)
    assert got == [(20, OK, MAJOR), (58, MAJOR, OK)]
    # one new blip after the clear: 1 departure, not 3 -> no alarm
    assert run(logic, [(0, MAJOR), (2, OK)], 50) == []


def test_count_with_latch_holds_until_acknowledged():
    logic = AlarmLogic("x", delay=30, latch=True, count=(3, 60))
    # cleared 30 s after the last blip (current OK), but latched: still MAJOR
    assert run(logic, blips(3), 100) == [(20, OK, MAJOR), (52, MAJOR, MAJOR)]
    assert logic.state.severity == MAJOR and logic.state.current == OK
    [tr] = logic.acknowledge("ana", 101)
    assert (tr.old, tr.new) == (MAJOR, OK)


def test_a_bouncing_pv_with_count_is_one_alarm_not_flapping():
    """Without count and for:, a PV bouncing every 5 s flaps; with count it is one alarm
    that stays up while the bouncing lasts (for: holds the clear), so it never flaps."""
    samples = []
    for i in range(40):
        samples += [(i * 10.0, MAJOR), (i * 10.0 + 5, OK)]

    def flapped(logic):
        det = FlapDetector()
        events = []
        t, queue = 0.0, list(samples)
        while t <= 440:
            while queue and queue[0][0] <= t:
                at, sev = queue.pop(0)
                for tr in logic.evaluate(Evaluation(sev, "m", 1.0, at), at):
                    ev = det.record("x", tr.current, tr.time)
                    events += [ev] if ev else []
            for tr in logic.tick(t):
                ev = det.record("x", tr.current, tr.time)
                events += [ev] if ev else []
            t += 1
        return [e.flapping for e in events]

    assert flapped(AlarmLogic("x")) == [True]
    counted = AlarmLogic("x", delay=30, count=(3, 60))
    assert flapped(counted) == []
    assert counted.state.severity == OK  # raised once at 20 s, cleared 30 s after the end
