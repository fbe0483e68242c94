"""Wall-clock helpers shared by the routing modules: local times, showing them.

Reading the times people type (--at, --since, --until) is `beamwatch.timefmt`,
the one grammar; `zone` and `local_to_epoch` come from there so that a naive
time means the same instant whoever parses it.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, tzinfo

from ..timefmt import local_to_epoch, zone

__all__ = ["ONE_SECOND", "epoch_to_local", "hhmm_minutes", "iso", "local_to_epoch", "show",
           "to_epoch", "zone"]


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


def hhmm_minutes(text: str) -> int:
    h, m = text.split(":")
    return int(h) * 60 + int(m)


ONE_SECOND = timedelta(seconds=1)
