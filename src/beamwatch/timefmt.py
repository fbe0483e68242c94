"""Times and durations as people type and read them, in the beamline's timezone.

One grammar for the config (`Duration`), every command-line option and every
front end; docs/operations.md "Times and durations on the command line" is its
user documentation:

    duration   90s  15m  2h  1h30m  7d  1w  500ms   (a number and a unit, repeated)
    now        now  now+2h  now-30m
    clock      14:00            (the last 14:00 for --since, the next one otherwise)
    day        today 08:00  yesterday 08:00  tomorrow 08:00
    ISO 8601   2026-11-30  2026-11-30T08:00  2026-11-30 08:00:15  2026-11-30T08:00+01:00

A time without a zone is wall-clock time in the beamline's timezone; an hour
skipped or repeated by a clock change follows `local_to_epoch`. Where a past
time is asked for (`parse_when`: --since, replay's --until) a bare duration
means that long ago; where a moment is asked for (`parse_at`, `parse_until`)
a bare duration is refused, because '2h' could mean either direction there.
"""

from __future__ import annotations

import functools
import re
import time
import zoneinfo
from datetime import datetime, timedelta, tzinfo
from datetime import time as clock_time
from typing import Any

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_CLOCK = re.compile(r"^(\d{1,2}):(\d{2})$")
_DAYS = {"yesterday": -1, "today": 0, "tomorrow": 1}
_DAY_CLOCK = re.compile(r"^(yesterday|today|tomorrow)\s+(\S+)$", re.IGNORECASE)
_NOW = re.compile(r"^now\s*(?:([+-])(.*))?$", re.IGNORECASE)


# --- durations ------------------------------------------------------------------------------


def parse_duration(raw: Any) -> float:
    """'30s', '15m', '1h30m', '7d', '1w' or a number of seconds -> seconds."""
    if isinstance(raw, bool):
        raise ValueError("a duration like '30s', '15m', '2h' or '7d' is needed, not a boolean")
    if isinstance(raw, (int, float)):
        if raw < 0:
            raise ValueError("a duration cannot be negative")
        return float(raw)
    text = str(raw).strip().replace(" ", "")
    pos, total = 0, 0.0
    for m in _PART.finditer(text):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if pos != len(text) or not text:
        raise ValueError(
            f"'{raw}' is not a duration; use a number and a unit: ms, s, m, h, d, w "
            "(e.g. '30s', '15m', '1h30m', '7d')"
        )
    return total


def format_duration(seconds: float) -> str:
    seconds = float(seconds)
    if seconds < 1 and seconds > 0:
        return f"{seconds * 1000:.0f}ms"
    out, rest = [], int(round(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if rest >= size:
            out.append(f"{rest // size}{unit}")
            rest %= size
    return "".join(out) or "0s"


def _is_duration(text: str) -> bool:
    try:
        parse_duration(text)
    except ValueError:
        return False
    return True


# --- wall clock -----------------------------------------------------------------------------


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


# --- points in time -------------------------------------------------------------------------


def parse_when(text: str, tz: str, now: float | None = None) -> float:
    """A time in the past, for --since: a duration back from now ('24h', '7d'),
    'now', 'now-2h', '08:00' (the last 08:00), 'yesterday 08:00' or ISO 8601."""
    now = time.time() if now is None else now
    text = text.strip()
    if _is_duration(text):
        return now - parse_duration(text)
    t = _point(text, tz, now, forward=False)
    if t is None:
        raise ValueError(f"'{text}' is not a duration or a time; "
                         f"try 24h, 2026-11-30T08:00 or now-2h{_day_hint(text)}")
    return t


def parse_at(text: str, tz: str, now: float | None = None) -> float:
    """A moment, for --at: 'now', 'now+2h', 'now-30m', '03:00' (the next 03:00),
    'tomorrow 03:00' or ISO 8601. A bare duration is refused (which way?)."""
    now = time.time() if now is None else now
    text = text.strip()
    if _is_duration(text):
        raise ValueError(f"'{text}' is a duration, not a time: say now+{text} or now-{text}")
    t = _point(text, tz, now, forward=True)
    if t is None:
        raise ValueError(f"'{text}' is not a time; try now, now+2h, 03:00 or "
                         f"2026-11-30T08:00{_day_hint(text)}")
    return t


def parse_until(text: str, tz: str, now: float) -> float:
    """An end, for --until of a silence or a mode override: '14:00' (the next
    14:00), 'now+2h', 'tomorrow 08:00' or ISO 8601. A duration is refused with
    a hint, because 'until 2h' is ambiguous; so is 'now', which is not ahead."""
    text = text.strip()
    if _is_duration(text):
        raise ValueError(f"'{text}' is a duration, not a time: say for {text}, "
                         "or until a time like 14:00 or 2026-11-27T14:00")
    if text.lower() == "now":
        raise ValueError("'now' is not in the future")
    t = _point(text, tz, now, forward=True)
    if t is None:
        raise ValueError(f"'{text}' is not a time like 14:00, 2026-11-27T14:00 "
                         f"or now+2h{_day_hint(text)}")
    return t


def _point(text: str, tz: str, now: float, forward: bool) -> float | None:
    """now±duration, a clock time, a day word and a clock time, or ISO 8601;
    None if `text` is none of them. A clock time out of range is a ValueError."""
    relative = _NOW.match(text)
    if relative:
        return _now_plus(text, relative, now)
    if _CLOCK.match(text):
        return _nearest_clock(_clock(text), tz, now, forward)
    on_day = _DAY_CLOCK.match(text)
    if on_day:
        today = datetime.fromtimestamp(now, zone(tz)).date()
        day = today + timedelta(days=_DAYS[on_day.group(1).lower()])
        return local_to_epoch(datetime.combine(day, _clock(on_day.group(2))), zone(tz))
    return _iso(text, tz)


def _now_plus(text: str, m: re.Match[str], now: float) -> float:
    sign, rest = m.group(1), m.group(2)
    if sign is None:
        return now
    try:
        delta = parse_duration(rest)
    except ValueError:
        raise ValueError(f"'{text}': after now{sign} comes a duration like 2h or 30m") from None
    return now + delta if sign == "+" else now - delta


def _clock(text: str) -> clock_time:
    m = _CLOCK.match(text)
    if m is None or int(m.group(1)) > 23 or int(m.group(2)) > 59:
        raise ValueError(f"'{text}' is not a time of day like 14:00")
    return clock_time(int(m.group(1)), int(m.group(2)))


def _nearest_clock(at: clock_time, tz: str, now: float, forward: bool) -> float:
    """The next `at` after now (forward), or the last one at or before now."""
    today = datetime.fromtimestamp(now, zone(tz)).date()
    t = local_to_epoch(datetime.combine(today, at), zone(tz))
    if forward and t <= now:
        return local_to_epoch(datetime.combine(today + timedelta(days=1), at), zone(tz))
    if not forward and t > now:
        return local_to_epoch(datetime.combine(today - timedelta(days=1), at), zone(tz))
    return t


def _iso(text: str, tz: str) -> float | None:
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        return None
    if dt.tzinfo is None:
        return local_to_epoch(dt, zone(tz))
    return dt.timestamp()


def _day_hint(text: str) -> str:
    return f" (a day needs a time: {text} 08:00)" if text.lower() in _DAYS else ""


# --- showing times --------------------------------------------------------------------------


def show(t: float | None, tz: str, seconds: bool = True) -> str:
    if t is None:
        return "—"
    fmt = "%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M"
    return datetime.fromtimestamp(t, zone(tz)).strftime(fmt)


def ago(t: float | None, now: float | None = None) -> str:
    """'42s', '5m', '3h12m', '2d4h' since t."""
    if t is None:
        return "—"
    now = time.time() if now is None else now
    d = max(0, int(now - t))
    if d < 60:
        return f"{d}s"
    if d < 3600:
        return f"{d // 60}m"
    if d < 86400:
        return f"{d // 3600}h{(d % 3600) // 60:02d}m"
    return f"{d // 86400}d{(d % 86400) // 3600}h"
