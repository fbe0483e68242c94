"""How to reach one person at one moment: their channel kinds in order, and quiet hours.

- Channel kinds: the person's `order`, else every kind they have set, in
  `DEFAULT_ORDER` (the instant, work-visible ones first, e-mail after, a
  webhook last). Kinds in `order` that are not set are skipped.
- Quiet hours (`quiet_hours: {start, end, channels}`, wall clock in the
  person's `timezone`, else the config's; start 22:00 / end 07:00 crosses
  midnight; start == end means never quiet): only MAJOR and worse reach them,
  and only on the kinds in `channels` (their `order` kept). An empty
  `channels` list does not restrict the kinds. If none of the allowed kinds is
  set for the person, the alarm still goes out on all their kinds, with a note:
  a MAJOR is never dropped because of a typo in quiet_hours.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from ..config.schema import CHANNEL_KINDS, PersonConfig
from ..model import Severity
from ._time import epoch_to_local, hhmm_minutes, local_to_epoch, zone

DEFAULT_ORDER: tuple[str, ...] = ("slack", "signal", "whatsapp", "email", "webhook")
QUIET_MIN_SEVERITY = Severity.MAJOR


def destinations(person: PersonConfig) -> tuple[str, ...]:
    """The channel kinds to use for `person`, in order."""
    order = person.order or DEFAULT_ORDER
    return tuple(k for k in order if k in CHANNEL_KINDS and getattr(person, k))


def in_quiet_hours(person: PersonConfig, at: float, default_tz: str) -> bool:
    q = person.quiet_hours
    if q is None:
        return False
    start, end = hhmm_minutes(q.start), hhmm_minutes(q.end)
    local = datetime.fromtimestamp(at, zone(person.timezone or default_tz))
    now = local.hour * 60 + local.minute
    if start == end:
        return False
    if start < end:
        return start <= now < end
    return now >= start or now < end  # crosses midnight


def quiet_end(person: PersonConfig, at: float, default_tz: str) -> float | None:
    """When the quiet period that `at` falls in ends (seconds since the epoch), or None
    when `at` is not in quiet hours.

    The end is a wall-clock time in the person's zone, so a night that contains a
    daylight-saving change is an hour shorter or longer: 22:00-07:00 London on
    2026-10-25 lasts 10 hours. An end time the clocks skip is moved forward by the
    gap; an end time that happens twice is the first occurrence still after `at`.
    """
    if not in_quiet_hours(person, at, default_tz):
        return None
    q = person.quiet_hours
    assert q is not None
    tz = zone(person.timezone or default_tz)
    local = epoch_to_local(at, tz)
    end_minutes = hhmm_minutes(q.end)
    day = local.replace(hour=0, minute=0, second=0, microsecond=0)
    if local.hour * 60 + local.minute >= end_minutes:
        day += timedelta(days=1)  # started before midnight: it ends tomorrow
    wall = day + timedelta(minutes=end_minutes)
    first = local_to_epoch(wall, tz)
    return first if first > at else wall.replace(tzinfo=tz, fold=1).timestamp()


@dataclass(frozen=True, slots=True)
class Reach:
    """`destinations` empty = not told now; `note` says why, or what quiet hours changed."""

    destinations: tuple[str, ...]
    quiet: bool
    note: str


def reach(person_id: str, person: PersonConfig, severity: Severity, at: float,
          default_tz: str) -> Reach:
    kinds = destinations(person)
    if not kinds:
        return Reach((), False, f"{person_id} has no channel set")
    if not in_quiet_hours(person, at, default_tz):
        return Reach(kinds, False, "")
    q = person.quiet_hours
    assert q is not None
    tzname = person.timezone or default_tz
    window = f"quiet hours {q.start}–{q.end} {tzname}"
    if severity < QUIET_MIN_SEVERITY:
        return Reach((), True, f"{window}: only MAJOR and worse, this is {severity}")
    if not q.channels:
        return Reach(kinds, True, f"{window}: MAJOR and worse still go out")
    allowed = tuple(k for k in kinds if k in q.channels)
    if not allowed:
        return Reach(kinds, True, f"{window}: none of quiet_hours.channels "
                                  f"({', '.join(q.channels)}) is set for {person_id}, "
                                  "so all their channels are used")
    return Reach(allowed, True, f"{window}: only {', '.join(allowed)}")
