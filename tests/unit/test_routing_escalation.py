"""Escalation levels (each expanded when it fires) and repeats."""

from __future__ import annotations

import textwrap
from datetime import datetime

import pytest

from beamwatch.config import parse_config
from beamwatch.routing import (
    Router,
    due,
    escalate,
    levels,
    next_escalation,
    next_repeat,
    plan,
    repeat_due,
)

CONFIG = textwrap.dedent("""\
    beamline: I04
    timezone: Europe/London
    checks:
      - {id: fe-vacuum, pv: "FE:1", group: vacuum}
      - {id: ring-current, pv: "SR:1", group: machine}
    people:
      ana: {email: ana@x.org, signal: "+441111111111",
            quiet_hours: {start: "22:00", end: "07:00", channels: [signal]}}
      ben: {email: ben@x.org, slack: U02}
      carl: {email: carl@x.org, whatsapp: "+12125550100", timezone: America/New_York,
             quiet_hours: {start: "21:00", end: "08:00"}}
    teams:
      mx: {members: [ana, ben], rota: {every: 1w, start: 2026-01-05T09:00, order: [ana, ben]}}
    channels:
      ops: {url: "json://localhost/ops"}
      mail: {kind: email, smtp_host: smtp.example.org, sender: beamwatch@example.org}
      slack: {kind: slack, token: xoxb-test, channel: "#ops"}
      signal: {url: "signal://localhost:8080/+441234567890"}
      whatsapp: {url: "whatsapp://abcdefTOKEN123@1234567890/"}
    routes:
      - match: {group: vacuum}
        to: [oncall:mx]
        repeat: 30m
        escalate:
          - {after: 1h, to: [person:carl, oncall:mx]}
          - {after: 15m, to: [team:mx]}
        continue: true
      - match: {group: vacuum}
        to: [channel:ops]
        escalate: {after: 2h, to: [person:carl]}
      - to: [channel:ops]
    """)


def utc(text: str) -> float:
    return datetime.fromisoformat(text + "+00:00").timestamp()


@pytest.fixture(scope="module")
def router():
    return Router(parse_config(CONFIG, env={}))


def test_levels_are_in_order_of_after(router):
    assert [(lv.level, lv.after, lv.to) for lv in levels(router.config, 0)] == [
        (1, 900.0, ("team:mx",)), (2, 3600.0, ("person:carl", "oncall:mx"))]
    assert [(lv.level, lv.after) for lv in levels(router.config, 1)] == [(1, 7200.0)]
    assert levels(router.config, 2) == []


def test_each_level_is_expanded_when_it_fires(router):
    # first told 07:30 UTC on the Monday of the handover (08:00 UTC = 09:00 BST): ben is
    # on call; level 2 fires at 08:30 UTC, when ana is
    first = utc("2026-03-30T07:30:00")
    result = router.route("fe-vacuum", "major", first, "user")
    assert result.names == ["person:ben", "channel:ops"]
    steps = plan(router, result, first)
    assert [(s.level.route, s.level.level, s.at) for s in steps] == [
        (0, 1, utc("2026-03-30T07:45:00")),
        (0, 2, utc("2026-03-30T08:30:00")),
        (1, 1, utc("2026-03-30T09:30:00")),
    ]
    level1, level2, other = (s.result for s in steps)
    assert [(r.name, r.destinations) for r in level1.recipients] == [
        ("ana", ("signal", "email")), ("ben", ("slack", "email"))]  # 08:45 BST: not quiet
    # carl is in quiet hours in New York (04:30 EDT): MAJOR still reaches him
    assert [(r.name, r.quiet) for r in level2.recipients] == [("carl", True), ("ana", False)]
    assert level2.recipient("ana").via == ("escalation level 2 of routes[0] oncall:mx",)
    assert level2.label == "escalation level 2 of routes[0]"
    assert [r.name for r in other.recipients] == ["carl"]


def test_a_minor_escalation_at_night_is_held_for_people_in_quiet_hours(router):
    first = utc("2026-01-06T23:00:00")  # ana's week, 23:00 in London
    lv1 = escalate(router, "fe-vacuum", "minor", 0, 1, first)
    assert [r.name for r in lv1.recipients] == ["ben"]
    assert [h.name for h in lv1.held] == ["ana"]
    assert lv1.at == first + 900


@pytest.mark.parametrize("elapsed, done, expected", [
    (0, 0, []),
    (899, 0, []),
    (900, 0, [1]),
    (3599, 0, [1]),
    (3600, 0, [1, 2]),
    (3600, 1, [2]),
    (7200, 2, []),
])
def test_due_levels(router, elapsed, done, expected):
    first = utc("2026-01-06T12:00:00")
    assert [lv.level for lv in due(router.config, 0, first, first + elapsed, done)] == expected


def test_next_escalation(router):
    first = 1000.0
    lv, at = next_escalation(router.config, 0, first, first + 60)
    assert (lv.level, at) == (1, first + 900)
    lv, at = next_escalation(router.config, 0, first, first + 900)
    assert (lv.level, at) == (2, first + 3600)
    assert next_escalation(router.config, 0, first, first + 3600) is None
    assert next_escalation(router.config, 2, first, first) is None


def test_escalate_rejects_a_level_that_does_not_exist(router):
    with pytest.raises(ValueError, match="routes\\[0\\] has 2 escalation level"):
        escalate(router, "fe-vacuum", "major", 0, 3, 0.0)


@pytest.mark.parametrize("repeat, last, now, when, is_due", [
    (1800.0, 100.0, 1899.0, 1900.0, False),
    (1800.0, 100.0, 1900.0, 1900.0, True),
    (None, 100.0, 99999.0, None, False),
    (0.0, 100.0, 99999.0, None, False),
])
def test_repeats(repeat, last, now, when, is_due):
    assert next_repeat(repeat, last) == when
    assert repeat_due(repeat, last, now) is is_due


def test_the_route_repeat_is_on_its_recipients(router):
    result = router.route("fe-vacuum", "major", utc("2026-01-06T12:00:00"), "user")
    assert result.recipient("ana").repeat == 1800
    assert result.recipient("ops", "channel").repeat is None
