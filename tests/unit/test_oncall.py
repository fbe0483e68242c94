"""Who is on call: rotas (DST-safe handovers), overrides, iCalendar feeds."""

from __future__ import annotations

import textwrap
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from beamwatch.config import parse_config
from beamwatch.routing import OnCallResolver, Rota, load_calendars, parse_calendar
from beamwatch.routing.oncall import PeopleIndex

LONDON = ZoneInfo("Europe/London")

BASE = """\
beamline: I04
timezone: Europe/London
checks:
  - {id: c1, pv: "X:1"}
people:
  ana: {name: Ana Silva, email: ana@example.org}
  ben: {name: Ben Jones, email: ben@example.org}
  carl: {email: carl@example.org}
  dan: {email: dan@example.org}
channels:
  mail: {kind: email, smtp_host: smtp.example.org, sender: beamwatch@example.org}
"""


def config(teams: str):
    return parse_config(BASE + textwrap.dedent(teams), env={})


def utc(text: str) -> float:
    return datetime.fromisoformat(text + "+00:00").timestamp()


def london(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=LONDON).timestamp()


WEEKLY = """\
teams:
  mx:
    members: [ana, ben]
    rota: {every: 1w, start: 2026-01-05T09:00, order: [ana, ben]}
"""


# --- rotas -----------------------------------------------------------------------------------

@pytest.mark.parametrize("at, expected", [
    ("2026-01-05T08:59:59", None),  # before the rota starts
    ("2026-01-05T09:00:00", "ana"),  # shift 0 (GMT: 09:00 local = 09:00 UTC)
    ("2026-01-12T08:59:59", "ana"),
    ("2026-01-12T09:00:00", "ben"),
    # clocks go forward Sun 2026-03-29 01:00 UTC: Monday's 09:00 BST handover is 08:00 UTC
    ("2026-03-30T07:59:59", "ben"),
    ("2026-03-30T08:00:00", "ana"),
    # clocks go back Sun 2026-10-25 01:00 UTC: 09:00 BST = 08:00 UTC before, 09:00 UTC after
    ("2026-10-19T07:59:59", "ana"),
    ("2026-10-19T08:00:00", "ben"),
    ("2026-10-26T08:59:59", "ben"),
    ("2026-10-26T09:00:00", "ana"),
])
def test_weekly_rota_hands_over_at_09_local_all_year(at, expected):
    r = OnCallResolver(config(WEEKLY))
    assert r.who("mx", utc(at)).person == expected


def test_the_week_with_the_dst_change_is_an_hour_shorter_or_longer():
    rota = Rota(["ana", "ben"], 7 * 86400, datetime(2026, 1, 5, 9), LONDON)
    spring = rota.shift(rota.index_at(utc("2026-03-25T12:00:00")))
    autumn = rota.shift(rota.index_at(utc("2026-10-21T12:00:00")))
    assert spring.end - spring.start == 7 * 86400 - 3600
    assert autumn.end - autumn.start == 7 * 86400 + 3600


@pytest.mark.parametrize("start, every, order, at, expected", [
    # daily at 01:30: on the spring day 01:30 does not exist -> 02:30 BST (01:30 UTC)
    ("2026-03-27T01:30", "1d", "[a, b, c]", "2026-03-29T01:29:59", "b"),
    ("2026-03-27T01:30", "1d", "[a, b, c]", "2026-03-29T01:30:00", "c"),
    ("2026-03-27T01:30", "1d", "[a, b, c]", "2026-03-30T00:30:00", "a"),  # 01:30 BST again
    # on the autumn day 01:30 happens twice: the first (BST, 00:30 UTC) is the handover
    ("2026-10-23T01:30", "1d", "[a, b, c]", "2026-10-25T00:29:59", "b"),
    ("2026-10-23T01:30", "1d", "[a, b, c]", "2026-10-25T00:30:00", "c"),
    # 12h day/night shifts keep 08:00 and 20:00 local
    ("2026-03-28T08:00", "12h", "[day, night]", "2026-03-29T06:59:59", "night"),
    ("2026-03-28T08:00", "12h", "[day, night]", "2026-03-29T07:00:00", "day"),
    ("2026-03-28T08:00", "12h", "[day, night]", "2026-03-29T19:00:00", "night"),
    # not a whole number of hours: exact elapsed time, the wall clock is ignored
    ("2026-03-29T00:00", "90m", "[x, y]", "2026-03-29T02:59:59", "y"),
    ("2026-03-29T00:00", "90m", "[x, y]", "2026-03-29T03:00:00", "x"),
])
def test_rota_arithmetic(start, every, order, at, expected):
    cfg = parse_config(textwrap.dedent(f"""\
        beamline: I04
        timezone: Europe/London
        checks: [{{id: c1, pv: "X:1"}}]
        people: {{a: {{email: a@x}}, b: {{email: b@x}}, c: {{email: c@x}}, day: {{email: d@x}},
                 night: {{email: n@x}}, x: {{email: x@x}}, y: {{email: y@x}}}}
        channels:
          mail: {{kind: email, smtp_host: smtp.example.org, sender: beamwatch@example.org}}
        teams:
          t: {{members: [a], rota: {{every: {every}, start: {start}, order: {order}}}}}
        """), env={})
    assert OnCallResolver(cfg).who("t", utc(at)).person == expected


def test_rota_timezone_overrides_the_config_timezone():
    cfg = config("""\
        teams:
          us:
            members: [ana, ben]
            rota: {every: 1w, start: 2026-01-05T09:00, order: [ana, ben],
                   timezone: America/New_York}
        """)
    r = OnCallResolver(cfg)
    assert r.who("us", utc("2026-01-05T13:59:59")).person is None
    assert r.who("us", utc("2026-01-05T14:00:00")).person == "ana"  # 09:00 EST
    # US clocks go forward 2026-03-08: Monday 03-09 09:00 EDT is 13:00 UTC (shift 9: ben)
    assert r.who("us", utc("2026-03-09T12:59:59")).person == "ana"
    assert r.who("us", utc("2026-03-09T13:00:00")).person == "ben"


def test_an_aware_start_is_read_in_the_rota_timezone():
    cfg = config("""\
        teams:
          mx: {members: [ana], rota: {every: 1d, start: "2026-06-01T09:00:00+00:00",
               order: [ana, ben]}}
        """)
    r = OnCallResolver(cfg)
    # 09:00 UTC is 10:00 BST: the handover is at 10:00 London time every day
    assert r.who("mx", london("2026-06-02T09:59:59")).person == "ana"
    assert r.who("mx", london("2026-06-02T10:00:00")).person == "ben"
    assert r.who("mx", london("2026-12-02T10:00:00")).person == "ana"  # 10:00 GMT in winter


def test_who_says_since_until_and_why():
    r = OnCallResolver(config(WEEKLY))
    a = r.who("mx", utc("2026-03-25T12:00:00"))
    assert (a.person, a.source) == ("ben", "rota")
    assert a.since == utc("2026-03-23T09:00:00")
    assert a.until == utc("2026-03-30T08:00:00")
    assert "rota shift 11" in a.reason and "handover at that time of day" in a.reason
    before = r.who("mx", utc("2026-01-01T00:00:00"))
    assert before.person is None and before.until == utc("2026-01-05T09:00:00")
    assert "the rota starts 2026-01-05 09:00 GMT" in before.reason


# --- overrides -------------------------------------------------------------------------------

OVERRIDES = """\
teams:
  mx:
    members: [ana, ben]
    rota: {every: 1w, start: 2026-01-05T09:00, order: [ana, ben]}
    overrides:
      - {person: carl, start: 2026-03-14T12:00, end: 2026-03-17T12:00}
      - {person: dan, start: 2026-03-15T00:00, end: 2026-03-15T12:00}
      - {person: dan, start: 2026-03-28T22:00, end: 2026-03-29T10:00}
"""


@pytest.mark.parametrize("at, expected, source", [
    ("2026-03-14T11:59:59", "ben", "rota"),  # shift 9 (03-09 .. 03-16) is ben's
    ("2026-03-14T12:00:00", "carl", "override"),  # spans the Monday handover ...
    ("2026-03-15T00:00:00", "dan", "override"),  # a later-listed override wins inside it
    ("2026-03-15T12:00:00", "carl", "override"),
    ("2026-03-16T09:00:00", "carl", "override"),  # ... the rota would say ana here
    ("2026-03-17T11:59:59", "carl", "override"),
    ("2026-03-17T12:00:00", "ana", "rota"),
    # an override across the spring DST change, in local time: 22:00 GMT -> 10:00 BST
    ("2026-03-28T21:59:59", "ben", "rota"),
    ("2026-03-28T22:00:00", "dan", "override"),
    ("2026-03-29T08:59:59", "dan", "override"),
    ("2026-03-29T09:00:00", "ben", "rota"),
])
def test_overrides_win_over_the_rota(at, expected, source):
    r = OnCallResolver(config(OVERRIDES))
    a = r.who("mx", utc(at))
    assert (a.person, a.source) == (expected, source)


def test_until_and_upcoming_follow_overrides():
    r = OnCallResolver(config(OVERRIDES))
    a = r.who("mx", utc("2026-03-14T12:00:00"))
    assert a.until == utc("2026-03-15T00:00:00")  # dan takes over
    nxt = r.upcoming("mx", utc("2026-03-14T12:00:00"), 4)
    assert [(n.person, n.at) for n in nxt] == [
        ("dan", utc("2026-03-15T00:00:00")),
        ("carl", utc("2026-03-15T12:00:00")),
        ("ana", utc("2026-03-17T12:00:00")),
        ("ben", utc("2026-03-23T09:00:00")),
    ]


def test_overrides_alone_make_someone_on_call():
    cfg = config("""\
        teams:
          t:
            members: [ana]
            overrides: [{person: ben, start: 2026-05-01T00:00, end: 2026-05-03T00:00}]
        """)
    r = OnCallResolver(cfg)
    assert r.who("t", london("2026-05-02T12:00")).person == "ben"
    nobody = r.who("t", london("2026-05-04T12:00"))
    assert nobody.person is None and "has no rota or ical" in nobody.reason


def test_unknown_team_is_a_clear_key_error():
    with pytest.raises(KeyError, match="unknown team 'nope'"):
        OnCallResolver(config(WEEKLY)).who("nope", 0)


# --- iCalendar --------------------------------------------------------------------------------

ICS = """\
BEGIN:VCALENDAR
VERSION:2.0
PRODID:-//beamwatch tests//EN
BEGIN:VEVENT
UID:ana-weeks
DTSTART;TZID=Europe/London:20260105T090000
DTEND;TZID=Europe/London:20260112T090000
RRULE:FREQ=WEEKLY;INTERVAL=2
EXDATE;TZID=Europe/London:20260413T090000
SUMMARY:On call: ana
END:VEVENT
BEGIN:VEVENT
UID:ben-weeks
DTSTART;TZID=Europe/London:20260112T090000
DTEND;TZID=Europe/London:20260119T090000
RRULE:FREQ=WEEKLY;INTERVAL=2
SUMMARY:MX support
ATTENDEE;CN=Someone:mailto:BEN@example.org
END:VEVENT
BEGIN:VEVENT
UID:swap
DTSTART;TZID=Europe/London:20260401T000000
DTEND;TZID=Europe/London:20260402T000000
SUMMARY:Ben Jones
END:VEVENT
BEGIN:VEVENT
UID:bank-holiday
DTSTART;VALUE=DATE:20260504
DTEND;VALUE=DATE:20260505
SUMMARY:carl
END:VEVENT
BEGIN:VEVENT
UID:stranger
DTSTART;TZID=Europe/London:20260415T000000
DTEND;TZID=Europe/London:20260415T060000
SUMMARY:On call: zed
END:VEVENT
END:VCALENDAR
"""

ICAL_TEAM = """\
teams:
  mx:
    members: [ana, ben]
    ical: oncall.ics
"""


def ical_resolver(teams: str = ICAL_TEAM, text: str = ICS) -> OnCallResolver:
    return OnCallResolver(config(teams), {"mx": parse_calendar(text)})


@pytest.mark.parametrize("at, expected, how", [
    ("2026-01-05T09:00:00", "ana", "SUMMARY"),
    ("2026-01-12T08:59:59", "ana", "SUMMARY"),
    ("2026-01-12T09:00:00", "ben", "ATTENDEE"),  # recurring, named by e-mail (any case)
    ("2026-03-30T07:59:59", "ben", "ATTENDEE"),  # occurrence 6 of the series, across DST
    ("2026-03-30T08:00:00", "ana", "SUMMARY"),  # 09:00 BST
    ("2026-03-31T23:00:00", "ben", "SUMMARY"),  # the swap (00:00 BST) starts later: it wins
    ("2026-04-01T23:00:00", "ana", "SUMMARY"),
    ("2026-05-03T23:30:00", "carl", "SUMMARY"),  # all-day event, in London time (00:30 BST)
])
def test_ical_events_name_the_person_on_call(at, expected, how):
    a = ical_resolver().who("mx", utc(at))
    assert (a.person, a.source) == (expected, "ical")
    assert f"({how}" in a.reason


def test_ical_exdate_and_unknown_names_leave_nobody_without_a_rota():
    r = ical_resolver()
    gap = r.who("mx", utc("2026-04-14T12:00:00"))  # ana's 04-13 week was removed
    assert gap.person is None
    assert "no event in calendar oncall.ics names anyone" in gap.reason
    stranger = r.who("mx", utc("2026-04-15T01:00:00"))
    assert stranger.person is None and "'On call: zed'" in stranger.reason


def test_ical_falls_back_to_the_rota_and_overrides_still_win():
    teams = """\
        teams:
          mx:
            members: [ana, ben]
            ical: oncall.ics
            rota: {every: 1w, start: 2026-01-05T09:00, order: [dan, carl]}
            overrides: [{person: dan, start: 2026-04-01T06:00, end: 2026-04-01T07:00}]
        """
    r = ical_resolver(teams)
    assert r.who("mx", utc("2026-04-14T12:00:00")).person == "dan"  # rota shift 14
    assert r.who("mx", utc("2026-04-14T12:00:00")).source == "rota"
    assert r.who("mx", utc("2026-04-01T05:30:00")).person == "dan"  # 06:30 BST: override
    assert r.who("mx", utc("2026-04-01T06:00:00")).person == "ben"  # the swap again


def test_a_calendar_that_could_not_be_read_falls_back_to_the_rota_and_says_why():
    cfg = config("""\
        teams:
          mx:
            members: [ana, ben]
            ical: https://cal.example.org/mx.ics
            rota: {every: 1w, start: 2026-01-05T09:00, order: [ana, ben]}
        """)
    r = OnCallResolver(cfg, {}, {"mx": "cannot fetch: timed out"})
    a = r.who("mx", utc("2026-01-06T00:00:00"))
    assert a.person == "ana" and a.source == "rota"
    assert "calendar https://cal.example.org/mx.ics unavailable: cannot fetch: timed out" in (
        a.reason)


def test_ical_until_sees_the_next_event():
    a = ical_resolver().who("mx", utc("2026-03-30T10:00:00"))
    assert a.person == "ana" and a.until == utc("2026-03-31T23:00:00")


@pytest.mark.parametrize("text, expected", [
    ("ana", "ana"),
    ("ANA", "ana"),
    ("On call: ana", "ana"),
    ("Ana Silva", "ana"),
    ("Primary - Ana Silva (MX)", "ana"),
    ("banana", None),  # whole words only
    ("ana-2", None),
    ("ana and ben", None),  # two people: nobody, rather than a guess
    ("", None),
])
def test_summary_names(text, expected):
    idx = PeopleIndex(config(WEEKLY).people)
    assert idx.by_summary(text) == expected


@pytest.mark.parametrize("address, cn, expected", [
    ("mailto:ana@example.org", None, "ana"),
    ("MAILTO:Ana@Example.org", None, "ana"),
    ("mailto:someone@else.org", "Ben Jones", "ben"),
    ("mailto:someone@else.org", "carl", "carl"),
    ("mailto:someone@else.org", None, None),
])
def test_attendee_names(address, cn, expected):
    assert PeopleIndex(config(WEEKLY).people).by_attendee(address, cn) == expected


def test_load_calendars_reads_files_next_to_the_config_and_reports_errors(tmp_path):
    (tmp_path / "oncall.ics").write_text(ICS)
    (tmp_path / "bad.ics").write_text("this is not a calendar")
    cfg = config("""\
        teams:
          mx: {members: [ana], ical: oncall.ics}
          gone: {members: [ana], ical: missing.ics}
          bad: {members: [ana], ical: bad.ics}
          web: {members: [ana], ical: "webcal://cal.example.org/x.ics"}
          plain: {members: [ana], rota: {start: 2026-01-05T09:00, order: [ana]}}
        """)
    fetched = []

    def fetch(url):
        fetched.append(url)
        return ICS.encode()

    calendars, errors = load_calendars(cfg, tmp_path, fetch)
    assert sorted(calendars) == ["mx", "web"]
    assert fetched == ["https://cal.example.org/x.ics"]
    assert errors["gone"].startswith("cannot read missing.ics: No such file")
    assert errors["bad"].startswith("bad.ics is not valid iCalendar")
    r = OnCallResolver(cfg, calendars, errors)
    assert r.who("mx", utc("2026-01-06T00:00:00")).person == "ana"
    assert "cannot read missing.ics" in r.who("gone", 0).reason


def test_a_calendar_that_fails_to_expand_never_stops_routing():
    teams = """\
        teams:
          mx:
            members: [ana, ben]
            ical: oncall.ics
            rota: {every: 1w, start: 2026-01-05T09:00, order: [dan, carl]}
        """
    r = ical_resolver(teams)

    class Broken:
        def between(self, *_):
            raise ValueError("bad RRULE")

    r.calendars["mx"].query = Broken()
    a = r.who("mx", utc("2026-01-06T12:00:00"))
    assert (a.person, a.source) == ("dan", "rota")
    assert "cannot expand it: ValueError: bad RRULE" in a.reason
