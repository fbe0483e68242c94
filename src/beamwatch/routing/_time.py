"""Wall-clock helpers shared by the routing modules: zones, local times, parsing --at."""

from __future__ import annotations

import functools
import time as _time
import zoneinfo
from datetime import date, datetime, timedelta, tzinfo


@functools.lru_cache(maxsize=64)
def zone(name: str) -> zoneinfo.ZoneInfo:
    return zoneinfo.ZoneInfo(name)


def local_to_epoch(local: datetime, tz: tzinfo) -> float:
    """A naive wall-clock time in `tz` -> seconds since the epoch.

    An ambiguous time (the repeated hour when clocks go back) is its first
    occurrence; a time that does not exist (the hour skipped when clocks go
    forward) is moved forward by the gap: 01:30 on the day London skips
    01:00-02:00 is 02:30 BST. This is zoneinfo's fold=0 rule.
    """
    return local.replace(tzinfo=tz, fold=0).timestamp()


def epoch_to_local(t: float, tz: tzinfo) -> datetime:
    """Seconds since the epoch -> the naive wall-clock time in `tz`."""
    return datetime.fromtimestamp(t, tz).replace(tzinfo=None)


def to_epoch(value: datetime | date, tz: tzinfo) -> float:
    """A datetime (aware, or naive = wall clock in `tz`) or a date (its midnight in `tz`)."""
    if not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day)
    if value.tzinfo is None:
        return local_to_epoch(value, tz)
    return value.timestamp()


def show(t: float | None, tz: str) -> str:
    """'2026-03-30 09:00 BST' — for explanations and the CLI."""
    if t is None:
        return "—"
    return datetime.fromtimestamp(t, zone(tz)).strftime("%Y-%m-%d %H:%M %Z")


def iso(t: float | None, tz: str) -> str | None:
    """ISO 8601 with the offset, for --json."""
    if t is None:
        return None
    return datetime.fromtimestamp(t, zone(tz)).isoformat()


def parse_at(text: str, tz: str, now: float | None = None) -> float:
    """'now', 'now+2h', 'now-30m' or an ISO 8601 time; a naive time is wall clock in `tz`."""
    from ..config.types import parse_duration

    now = _time.time() if now is None else now
    text = text.strip()
    if text.startswith("now"):
        rest = text[3:].strip()
        if not rest:
            return now
        if rest[0] in "+-":
            try:
                delta = parse_duration(rest[1:])
            except ValueError:
                pass
            else:
                return now + delta if rest[0] == "+" else now - delta
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"'{text}' is not a time: give 'now', 'now+2h' or ISO 8601 like "
                         "2026-03-29T01:30 (naive times are in the config timezone)") from None
    return to_epoch(dt, zone(tz))


def hhmm_minutes(text: str) -> int:
    h, m = text.split(":")
    return int(h) * 60 + int(m)


ONE_SECOND = timedelta(seconds=1)
