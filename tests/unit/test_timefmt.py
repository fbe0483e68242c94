"""The one grammar of times and durations (beamwatch.timefmt): every form, in the
beamline's timezone, and the error a user sees for each kind of bad input."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from beamwatch.config import parse_config
from beamwatch.timefmt import parse_at, parse_duration, parse_until, parse_when

TZ = "Europe/London"
LONDON = ZoneInfo(TZ)
NOW = datetime(2026, 11, 30, 9, 30, tzinfo=LONDON).timestamp()  # a Monday, GMT


def london(*args: int) -> float:
    return datetime(*args, tzinfo=LONDON).timestamp()


@pytest.mark.parametrize(("text", "seconds"), [
    ("90s", 90), ("15m", 900), ("2h", 7200), ("7d", 604800), ("1w", 604800),
    ("1h30m", 5400), ("500ms", 0.5), ("1.5h", 5400), (" 2 h ", 7200),
])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["3 weeks", "soon", "2", "h", "", "-2h"])
def test_what_is_not_a_duration(text):
    with pytest.raises(ValueError, match="is not a duration; use a number and a unit"):
        parse_duration(text)


def test_the_config_reads_durations_with_the_same_grammar():
    cfg = parse_config("""
        beamline: I04
        checks:
          - {id: a, pv: "A:B", above: {major: 1}, for: 1w}
          - {id: b, pv: "A:C", above: {major: 1}, for: 1h30m}
    """.replace("\n        ", "\n"), "i04.yaml")
    by_id = {c.id: c.for_ for c in cfg.checks}
    assert (by_id["a"], by_id["b"]) == (parse_duration("1w"), parse_duration("1h30m"))


# --- --since: a time in the past ------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("24h", NOW - 86400),
    ("1w", NOW - 604800),
    ("now", NOW),
    ("NOW", NOW),
    ("now-2h", NOW - 7200),
    ("now - 30m", NOW - 1800),
    ("now+15m", NOW + 900),
    ("08:00", london(2026, 11, 30, 8, 0)),        # the last 08:00: this morning
    ("10:00", london(2026, 11, 29, 10, 0)),       # not yet today: yesterday's
    ("yesterday 08:00", london(2026, 11, 29, 8, 0)),
    ("today 08:00", london(2026, 11, 30, 8, 0)),
    ("2026-11-27", london(2026, 11, 27, 0, 0)),
    ("2026-11-27T08:00", london(2026, 11, 27, 8, 0)),
    ("2026-11-27 08:00:15", london(2026, 11, 27, 8, 0, 15)),
    ("2026-11-27T08:00+01:00", datetime(2026, 11, 27, 7, 0, tzinfo=ZoneInfo("UTC")).timestamp()),
    ("2026-11-27T08:00Z", datetime(2026, 11, 27, 8, 0, tzinfo=ZoneInfo("UTC")).timestamp()),
])
def test_since_reads_every_form(text, expected):
    assert parse_when(text, TZ, NOW) == expected


def test_a_naive_time_is_in_the_beamline_timezone_summer_and_winter():
    assert parse_when("2026-07-01T12:00", TZ, NOW) == london(2026, 7, 1, 12, 0)  # BST
    assert parse_when("2026-07-01T12:00", "UTC", NOW) == london(2026, 7, 1, 13, 0)


def test_an_hour_skipped_by_the_clock_change_moves_forward():
    # London skips 01:00-02:00 on 2026-03-29: 01:30 is 02:30 BST, as on-call rotas read it
    assert parse_when("2026-03-29T01:30", TZ, NOW) == london(2026, 3, 29, 2, 30)


@pytest.mark.parametrize(("text", "message"), [
    ("3 weeks", "'3 weeks' is not a duration or a time; try 24h, 2026-11-30T08:00 or now-2h"),
    ("last tuesday", "'last tuesday' is not a duration or a time; try 24h, 2026-11-30T08:00 or "
                     "now-2h"),
    ("2026-13-01", "'2026-13-01' is not a duration or a time; try 24h, 2026-11-30T08:00 or "
                   "now-2h"),
    ("yesterday", "'yesterday' is not a duration or a time; try 24h, 2026-11-30T08:00 or "
                  "now-2h (a day needs a time: yesterday 08:00)"),
    ("now-soon", "'now-soon': after now- comes a duration like 2h or 30m"),
    ("25:00", "'25:00' is not a time of day like 14:00"),
    ("yesterday 8am", "'8am' is not a time of day like 14:00"),
])
def test_since_errors_say_what_would_do(text, message):
    with pytest.raises(ValueError) as e:
        parse_when(text, TZ, NOW)
    assert str(e.value) == message


# --- --at: a moment ---------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("now", NOW),
    ("now+2h", NOW + 7200),
    ("now-30m", NOW - 1800),
    ("03:00", london(2026, 12, 1, 3, 0)),         # the next 03:00: tonight
    ("12:00", london(2026, 11, 30, 12, 0)),
    ("tomorrow 03:00", london(2026, 12, 1, 3, 0)),
    ("2026-12-01T03:00", london(2026, 12, 1, 3, 0)),
    ("2026-12-01", london(2026, 12, 1, 0, 0)),
])
def test_at_reads_every_form(text, expected):
    assert parse_at(text, TZ, NOW) == expected


@pytest.mark.parametrize(("text", "message"), [
    ("2h", "'2h' is a duration, not a time: say now+2h or now-2h"),
    ("tomorrow", "'tomorrow' is not a time; try now, now+2h, 03:00 or 2026-11-30T08:00 "
                 "(a day needs a time: tomorrow 08:00)"),
    ("now+later", "'now+later': after now+ comes a duration like 2h or 30m"),
])
def test_at_errors(text, message):
    with pytest.raises(ValueError) as e:
        parse_at(text, TZ, NOW)
    assert str(e.value) == message


# --- --until of a silence or an override: an end ahead ------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("14:00", london(2026, 11, 30, 14, 0)),
    ("08:00", london(2026, 12, 1, 8, 0)),
    ("now+2h", NOW + 7200),
    ("tomorrow 08:00", london(2026, 12, 1, 8, 0)),
    ("2026-12-02T08:00", london(2026, 12, 2, 8, 0)),
])
def test_until_reads_every_form(text, expected):
    assert parse_until(text, TZ, NOW) == expected


@pytest.mark.parametrize(("text", "message"), [
    ("2h", "'2h' is a duration, not a time: say for 2h, or until a time like 14:00 or "
           "2026-11-27T14:00"),
    ("now", "'now' is not in the future"),
    ("teatime", "'teatime' is not a time like 14:00, 2026-11-27T14:00 or now+2h"),
])
def test_until_errors(text, message):
    with pytest.raises(ValueError) as e:
        parse_until(text, TZ, NOW)
    assert str(e.value) == message
