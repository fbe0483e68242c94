"""Subscriptions add people no route names; a person reached twice is told once."""

from __future__ import annotations

import textwrap
from datetime import datetime

import pytest

from beamwatch.config import parse_config
from beamwatch.config.schema import SubscriptionConfig
from beamwatch.model import Severity
from beamwatch.routing import Router, subscribers
from beamwatch.routing.subscriptions import matches

CONFIG = textwrap.dedent("""\
    beamline: I04
    timezone: Europe/London
    checks:
      - {id: ring-current, pv: "SR:1", group: machine}
      - {id: fe-vacuum, pv: "FE:1", group: vacuum}
      - {id: dcm-temp, pv: "DCM:1", group: optics}
    people:
      ana: {email: ana@x.org, signal: "+441111111111",
            quiet_hours: {start: "22:00", end: "07:00", channels: [signal]},
            subscriptions: [{groups: [vacuum], severity: minor}]}
      ben: {email: ben@x.org}
      dora: {email: dora@x.org,
             subscriptions: [{checks: [ring-current], severity: major}, {groups: [optics]}]}
      erik: {email: erik@x.org, subscriptions: [{severity: invalid}]}
    teams:
      mx: {members: [ana, ben], rota: {every: 1w, start: 2026-01-05T09:00, order: [ana, ben]}}
    channels:
      ops: {url: "json://localhost/ops"}
      mail: {kind: email, smtp_host: smtp.example.org, sender: beamwatch@example.org}
      signal: {url: "signal://localhost:8080/+441234567890"}
    routes:
      - match: {group: vacuum, severity: major}
        to: [oncall:mx, team:mx]
      - match: {group: machine}
        to: [channel:ops]
    """)

DAY = datetime.fromisoformat("2026-01-06T12:00:00+00:00").timestamp()  # ana's week
NIGHT = datetime.fromisoformat("2026-01-06T23:00:00+00:00").timestamp()


@pytest.fixture(scope="module")
def router():
    return Router(parse_config(CONFIG, env={}))


@pytest.mark.parametrize("sub, check, group, severity, expected", [
    ({"checks": ["a"]}, "a", "g", "minor", "follows check a at minor and worse"),
    ({"checks": ["a"]}, "b", "g", "major", None),
    ({"groups": ["g"], "severity": "major"}, "b", "g", "major",
     "follows group g at major and worse"),
    ({"groups": ["g"], "severity": "major"}, "b", "g", "minor", None),
    ({"groups": ["g"]}, "b", "g", "ok", None),  # OK is never an alarm
    ({"severity": "invalid"}, "any", "thing", "invalid",
     "follows every check at invalid and worse"),
    ({"severity": "invalid"}, "any", "thing", "major", None),
])
def test_subscription_matching(sub, check, group, severity, expected):
    assert matches(SubscriptionConfig(**sub), check, group, Severity.parse(severity)) == expected


@pytest.mark.parametrize("check, severity, people", [
    ("ring-current", "minor", []),
    ("ring-current", "major", ["dora"]),
    ("dcm-temp", "minor", ["dora"]),  # second subscription: groups [optics], minor
    ("fe-vacuum", "minor", ["ana"]),
    ("fe-vacuum", "invalid", ["ana", "erik"]),
])
def test_subscribers(router, check, severity, people):
    group = router.config.check(check).group
    assert [s.person for s in subscribers(router.config, check, group,
                                          Severity.parse(severity))] == people


def test_a_subscription_adds_a_person_no_route_names(router):
    result = router.route("dcm-temp", "minor", DAY, "user")
    assert result.matched == ()  # no route for optics at all
    assert result.names == ["person:dora"]
    dora = result.recipient("dora")
    assert dora.subscription and dora.routes == () and dora.route is None
    assert dora.via == ("subscription people.dora.subscriptions[1]: follows group optics at "
                        "minor and worse",)


def test_a_person_reached_by_routes_and_a_subscription_is_told_once(router):
    result = router.route("fe-vacuum", "invalid", DAY, "user")
    assert result.names == ["person:ana", "person:ben", "person:erik"]
    ana = result.recipient("ana")
    assert ana.routes == (0,) and ana.subscription
    assert ana.via == ("routes[0] oncall:mx", "routes[0] team:mx",
                       "subscription people.ana.subscriptions[0]: follows group vacuum at "
                       "minor and worse")
    assert result.recipient("erik").subscription


def test_subscriptions_respect_quiet_hours(router):
    minor = router.route("fe-vacuum", "minor", NIGHT, "user")
    assert minor.recipients == ()
    assert [(h.name, h.subscription) for h in minor.held] == [("ana", True)]
    major = router.route("fe-vacuum", "major", NIGHT, "user")
    assert major.recipient("ana").destinations == ("signal",)


def test_subscriptions_can_be_left_out(router):
    assert router.route("dcm-temp", "minor", DAY, "user", subscriptions=False).names == []
