"""Silences (matchers, expiry, reminders) and maintenance windows (cron, RRULE, iCalendar)."""

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from beamwatch.engine.mute import Alert
from beamwatch.engine.silences import (
    CalendarWindows,
    MaintenanceWindow,
    Matcher,
    RecurringWindow,
    ScheduleMuter,
    Silence,
    SilenceError,
    SilenceMuter,
)
from beamwatch.model import MuteReason, Severity

UTC = ZoneInfo("UTC")
LONDON = ZoneInfo("Europe/London")


def at(*args, tz=UTC) -> float:
    return datetime(*args, tzinfo=tz).timestamp()


T0 = at(2026, 3, 3, 10, 0)  # a Tuesday
GAUGE = Alert("fe-gauge-3", group="vacuum", labels={"area": "front-end"}, severity=Severity.MAJOR)


def silence(**kw):
    base = dict(id="s1", matchers=("check=fe-gauge-3",), start=T0, end=T0 + 4 * 3600,
                author="ana", reason="replacing gauge")
    return Silence(**(base | kw))


@pytest.mark.parametrize("matcher,hit", [
    ("check=fe-gauge-3", True),
    ("check=fe-gauge", False),
    ("check=~fe-gauge-.*", True),
    ("check=~gauge", False),  # anchored, as in Alertmanager
    ("group=vacuum", True),
    ("group!=vacuum", False),
    ("group!~cryo|optics", True),
    ("area=front-end", True),
    ("severity=major", True),
    ("missing=", True),  # a missing label reads as ""
    ('area="front-end"', True),
])
def test_matchers(matcher, hit):
    assert Matcher.parse(matcher).matches(GAUGE.label_set()) is hit


@pytest.mark.parametrize("kw,message", [
    (dict(author=" "), "needs an author"),
    (dict(reason=""), "needs a reason"),
    (dict(end=T0), "must end after it starts"),
    (dict(matchers=()), "at least one matcher"),
    (dict(matchers=("check=~.*",)), "would match every alert"),
    (dict(matchers=("check=~(",)), "bad regex"),
    (dict(matchers=("check fe",)), "is not a matcher"),
])
def test_invalid_silences(kw, message):
    with pytest.raises(SilenceError, match=message):
        silence(**kw)


def test_silence_mutes_until_it_expires():
    muter = SilenceMuter([silence()], tz="UTC")
    assert muter.reason == MuteReason.SILENCE
    assert muter.mutes(GAUGE, T0 - 1) is None
    assert muter.mutes(GAUGE, T0) == "silenced by ana until 14:00 UTC: replacing gauge"
    assert muter.mutes(GAUGE, T0 + 4 * 3600 - 1) is not None
    assert muter.mutes(GAUGE, T0 + 4 * 3600) is None  # expired
    assert [s.id for s in muter.ended(T0, T0 + 5 * 3600)] == ["s1"]
    assert muter.ended(T0 + 5 * 3600, T0 + 6 * 3600) == []
    assert muter.mutes(Alert("other"), T0 + 1) is None


def test_detail_names_the_day_when_not_today_and_counts_others():
    muter = SilenceMuter([silence(end=T0 + 86400), silence(id="s2", matchers=("group=vacuum",))])
    assert muter.mutes(GAUGE, T0) == (
        "silenced by ana until Wed 04 Mar 10:00 UTC: replacing gauge (+1 more)")


def test_expire_early_and_extend():
    muter = SilenceMuter([silence()])
    ended = muter.expire("s1", T0 + 60, by="ben")
    assert ended.end == T0 + 60 and ended.expired_by == "ben"
    assert muter.mutes(GAUGE, T0 + 61) is None
    muter.put(silence(end=T0 + 8 * 3600))  # same id: an extension
    assert muter.mutes(GAUGE, T0 + 5 * 3600) is not None
    extended = muter.get("s1")
    assert muter.prune(T0 + 8 * 3600 + 86400 - 1) == []
    assert muter.prune(T0 + 8 * 3600 + 86400) == [extended]
    assert muter.all() == []


def test_reminders_fall_due_once_before_the_end():
    muter = SilenceMuter([silence()], remind_before=15 * 60)
    end = T0 + 4 * 3600
    assert muter.due_reminders(end - 16 * 60) == []
    [r] = muter.due_reminders(end - 10 * 60)  # pure query: due during the last 15 min
    assert r.author == "ana" and r.at == end - 15 * 60
    assert "ends at 14:00 UTC" in r.text and r.key == f"silence-reminder:s1:{end:.0f}"
    # polled every minute with `since`: exactly once
    due = [muter.due_reminders(t, since=t - 60) for t in range(int(end - 3600), int(end), 60)]
    assert sum(len(d) for d in due) == 1
    assert muter.due_reminders(end) == []


def test_no_reminder_for_short_or_hand_ended_silences():
    muter = SilenceMuter([silence(end=T0 + 600)], remind_before=900)
    assert muter.due_reminders(T0 + 300) == []
    muter = SilenceMuter([silence(remind_before=0)])
    assert muter.due_reminders(T0 + 4 * 3600 - 60) == []


# --- maintenance windows -------------------------------------------------------------------------


def test_cron_window_every_tuesday_0800_for_8h_in_london_time():
    w = RecurringWindow(8 * 3600, cron="0 8 * * 2", tz="Europe/London")
    winter = at(2026, 3, 3, 8, 0, tz=LONDON)
    assert w.occurrence(winter - 1) is None
    assert w.occurrence(winter) == (winter, winter + 8 * 3600)
    assert w.occurrence(winter + 8 * 3600 - 1) == (winter, winter + 8 * 3600)
    assert w.occurrence(winter + 8 * 3600) is None
    summer = at(2026, 4, 7, 8, 0, tz=LONDON)  # after the clocks went forward: still 08:00
    assert w.occurrence(summer + 60) == (summer, summer + 8 * 3600)
    assert w.next_start(winter + 3600) == at(2026, 3, 10, 8, 0, tz=LONDON)


def test_rrule_window_first_tuesday_of_the_month():
    start = at(2026, 1, 6, 9, 0, tz=LONDON)
    w = RecurringWindow(3 * 3600, rrule="FREQ=MONTHLY;BYDAY=1TU", start=start, tz="Europe/London")
    march = at(2026, 3, 3, 9, 0, tz=LONDON)
    assert w.occurrence(march + 60) == (march, march + 3 * 3600)
    assert w.occurrence(at(2026, 3, 10, 10, 0, tz=LONDON)) is None
    assert w.occurrence(start - 3600) is None


@pytest.mark.parametrize("kw,message", [
    (dict(), "exactly one of cron: or rrule:"),
    (dict(cron="0 8 * * 2", rrule="FREQ=DAILY"), "exactly one"),
    (dict(cron="every tuesday"), "not a cron expression"),
    (dict(rrule="FREQ=DAILY"), "needs start:"),
    (dict(rrule="FREQ=SOMETIMES", start=0), "not an iCalendar RRULE"),
])
def test_invalid_windows(kw, message):
    with pytest.raises(SilenceError, match=message):
        RecurringWindow(3600, **kw)


def test_schedule_muter_mutes_only_what_the_window_matches():
    window = MaintenanceWindow("md-tuesday", RecurringWindow(8 * 3600, cron="0 8 * * 2"),
                               ("group=~vacuum|machine",), reason="machine development")
    muter = ScheduleMuter([window], tz="UTC")
    assert muter.reason == MuteReason.SCHEDULE
    tue = at(2026, 3, 3, 9, 0)
    assert muter.mutes(GAUGE, tue) == (
        "maintenance window md-tuesday until 16:00 UTC: machine development")
    assert muter.mutes(Alert("det-temp", group="detector"), tue) is None
    assert muter.mutes(GAUGE, tue + 86400) is None


ICS = """BEGIN:VCALENDAR
VERSION:2.0
PRODID:-//test//beamwatch//EN
BEGIN:VEVENT
UID:md-1@example.org
DTSTART:20260303T080000Z
DTEND:20260303T160000Z
RRULE:FREQ=WEEKLY;COUNT=4
SUMMARY:Machine development
END:VEVENT
END:VCALENDAR
"""


def test_icalendar_machine_schedule():
    cal = CalendarWindows(ICS)
    start = at(2026, 3, 10, 8, 0)
    assert cal.occurrence(start + 60) == (start, start + 8 * 3600)
    assert cal.summary(start + 60) == "Machine development"
    assert cal.occurrence(start - 60) is None
    assert cal.occurrence(at(2026, 4, 7, 9, 0)) is None  # COUNT=4 ran out
