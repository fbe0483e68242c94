"""Quiet hours and channel order: who is reached on what, at night and by day."""

from __future__ import annotations

import textwrap
from datetime import datetime

import pytest

from beamwatch.config import parse_config
from beamwatch.model import Severity
from beamwatch.routing import Router, destinations, in_quiet_hours, reach

PEOPLE = textwrap.dedent("""\
    beamline: I04
    timezone: Europe/London
    checks: [{id: c1, pv: "X:1"}]
    people:
      ana: {email: a@x, slack: U01, signal: "+441111111111", order: [signal, email],
            quiet_hours: {start: "22:00", end: "07:00", channels: [signal]}}
      carl: {email: c@x, whatsapp: "+12125550100", timezone: America/New_York,
             quiet_hours: {start: "21:00", end: "08:00"}}
      lunch: {email: l@x, quiet_hours: {start: "12:00", end: "14:00"}}
      same: {email: s@x, quiet_hours: {start: "09:00", end: "09:00"}}
      typo: {email: t@x, slack: U09, quiet_hours: {start: "22:00", end: "07:00",
             channels: [whatsapp]}}
      all5: {email: e@x, slack: U05, signal: "+445555555555", whatsapp: "+15555550155",
             webhook: "https://h/5"}
      mine: {email: m@x, slack: U06, order: [email, slack]}
    channels:
      mail: {kind: email, smtp_host: smtp.example.org, sender: beamwatch@example.org}
      slack: {kind: slack, token: xoxb-test, channel: "#ops"}
      signal: {url: "signal://localhost:8080/+441234567890"}
      whatsapp: {url: "whatsapp://abcdefTOKEN123@1234567890/"}
    routes:
      - to: [person:ana, person:carl, person:typo]
    """)


@pytest.fixture(scope="module")
def cfg():
    return parse_config(PEOPLE, env={})


def utc(text: str) -> float:
    return datetime.fromisoformat(text + "+00:00").timestamp()


@pytest.mark.parametrize("person, at, severity, kinds, quiet", [
    # ana: 22:00-07:00 London, crosses midnight; only signal at night
    ("ana", "2026-01-10T21:59:59", "minor", ("signal", "email"), False),
    ("ana", "2026-01-10T22:00:00", "minor", (), True),  # held: MINOR at night
    ("ana", "2026-01-10T23:30:00", "major", ("signal",), True),
    ("ana", "2026-01-11T03:00:00", "invalid", ("signal",), True),  # after midnight too
    ("ana", "2026-01-11T06:59:59", "major", ("signal",), True),
    ("ana", "2026-01-11T07:00:00", "minor", ("signal", "email"), False),
    # in summer the window is 22:00-07:00 BST = 21:00-06:00 UTC
    ("ana", "2026-07-01T21:00:00", "minor", (), True),
    ("ana", "2026-07-01T06:00:00", "minor", ("signal", "email"), False),
    # the night the clocks go forward: 07:00 BST is 06:00 UTC
    ("ana", "2026-03-29T05:59:59", "minor", (), True),
    ("ana", "2026-03-29T06:00:00", "minor", ("signal", "email"), False),
    # carl: his own timezone; no channel list = all his kinds for MAJOR and worse
    ("carl", "2026-01-10T01:59:59", "minor", ("whatsapp", "email"), False),  # 20:59 EST
    ("carl", "2026-01-10T02:00:00", "minor", (), True),  # 21:00 EST
    ("carl", "2026-01-10T02:30:00", "major", ("whatsapp", "email"), True),  # 21:30 EST
    ("carl", "2026-01-10T13:00:00", "minor", ("whatsapp", "email"), False),  # 08:00 EST
    ("carl", "2026-01-10T12:59:59", "minor", (), True),
    # a window that does not cross midnight
    ("lunch", "2026-01-10T11:59:59", "minor", ("email",), False),
    ("lunch", "2026-01-10T12:00:00", "minor", (), True),
    ("lunch", "2026-01-10T14:00:00", "minor", ("email",), False),
    # start == end: never quiet
    ("same", "2026-01-10T09:00:00", "minor", ("email",), False),
    # no allowed kind is set: a MAJOR still goes out everywhere
    ("typo", "2026-01-10T23:00:00", "major", ("slack", "email"), True),
    ("typo", "2026-01-10T23:00:00", "minor", (), True),
])
def test_quiet_hours(cfg, person, at, severity, kinds, quiet):
    r = reach(person, cfg.people[person], Severity.parse(severity), utc(at), cfg.timezone)
    assert (r.destinations, r.quiet) == (kinds, quiet)


def test_quiet_hours_notes(cfg):
    night = utc("2026-01-10T23:30:00")
    assert reach("ana", cfg.people["ana"], Severity.MINOR, night, cfg.timezone).note == (
        "quiet hours 22:00–07:00 Europe/London: only MAJOR and worse, this is MINOR")
    assert reach("ana", cfg.people["ana"], Severity.MAJOR, night, cfg.timezone).note == (
        "quiet hours 22:00–07:00 Europe/London: only signal")
    assert reach("carl", cfg.people["carl"], Severity.MAJOR, utc("2026-01-10T03:00:00"),
                 cfg.timezone).note == (
        "quiet hours 21:00–08:00 America/New_York: MAJOR and worse still go out")
    assert "none of quiet_hours.channels (whatsapp) is set for typo" in reach(
        "typo", cfg.people["typo"], Severity.MAJOR, night, cfg.timezone).note


@pytest.mark.parametrize("person, expected", [
    ("all5", ("slack", "signal", "whatsapp", "email", "webhook")),  # the default order
    ("mine", ("email", "slack")),  # their own order
    ("ana", ("signal", "email")),  # slack is set but not in her order: not used
    ("carl", ("whatsapp", "email")),
])
def test_destination_order(cfg, person, expected):
    assert destinations(cfg.people[person]) == expected


def test_no_quiet_hours_is_never_quiet(cfg):
    assert not in_quiet_hours(cfg.people["all5"], utc("2026-01-10T03:00:00"), cfg.timezone)


def test_the_router_holds_people_in_quiet_hours_and_says_why(cfg):
    night = utc("2026-01-11T03:30:00")  # 03:30 in London, 22:30 in New York
    result = Router(cfg).route("c1", "minor", night, "user")
    assert result.recipients == ()
    assert [h.name for h in result.held] == ["ana", "carl", "typo"]
    assert result.held[0].via == ("routes[0] person:ana",)
    lines = result.explain()
    assert "not told now:" in lines
    assert ("  person ana: quiet hours 22:00–07:00 Europe/London: only MAJOR and worse, "
            "this is MINOR; offered again 2026-01-11 07:00 GMT  <- routes[0] person:ana") in lines
    major = Router(cfg).route("c1", "major", night, "user")
    assert [(r.name, r.destinations, r.quiet) for r in major.recipients] == [
        ("ana", ("signal",), True), ("carl", ("whatsapp", "email"), True),
        ("typo", ("slack", "email"), True)]
