"""Silences (ad hoc, by a person) and maintenance windows (recurring, planned).

A Silence is Alertmanager's: matchers on the alert's labels, a start, an end,
an author and a reason — both required, because a silence nobody can explain
is how real alarms get missed. It ends by itself; the author is reminded
before it does (`due_reminders`), so a job that overruns is extended on
purpose rather than discovered by a page.

A maintenance window is a recurring interval (cron or iCalendar RRULE, plus a
duration, in the beamline's timezone so "Tuesday 08:00" survives DST) with
matchers; `ScheduleMuter` mutes what it matches while it is open.

Everything here is a pure function of the time passed in.
"""

from __future__ import annotations

import zoneinfo
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Protocol

from croniter import croniter
from dateutil.rrule import rrulestr

from ..model import MuteReason
from ..model.silence import (
    Matcher,
    Silence,
    SilenceError,
    SilenceReminder,
    _guard_matchers,
    _match_all,
    matchers,
    until_text,
)
from .mute import Alert


class SilenceMuter:
    """The SILENCE stage, and the set of silences it knows.

    The store is the truth for silences; the engine mirrors them here
    (`put` on create/extend, `expire` on an early end) so that muting is a
    memory lookup.
    """

    reason = MuteReason.SILENCE

    def __init__(self, silences: Iterable[Silence] = (), *, tz: str = "UTC",
                 remind_before: float = 15 * 60):
        self.tz = tz
        self.remind_before = remind_before
        self._silences: dict[str, Silence] = {}
        for s in silences:
            self.put(s)

    # -- the set ------------------------------------------------------------------------

    def put(self, silence: Silence) -> None:
        """Add a silence, or replace the one with the same id (an extension)."""
        self._silences[silence.id] = silence

    def get(self, silence_id: str) -> Silence:
        return self._silences[silence_id]

    def expire(self, silence_id: str, now: float, by: str) -> Silence:
        """End a silence now (it stays known, ended, for the log and for `ended`)."""
        s = self._silences[silence_id]
        if s.end <= now:
            return s
        ended = replace(s, end=max(now, s.start), expired_by=by)
        self._silences[silence_id] = ended
        return ended

    def prune(self, now: float, keep: float = 86400.0) -> list[Silence]:
        """Forget silences that ended more than `keep` seconds ago; return them."""
        gone = [s for s in self._silences.values() if s.end <= now - keep]
        for s in gone:
            del self._silences[s.id]
        return gone

    def all(self) -> list[Silence]:
        return sorted(self._silences.values(), key=lambda s: (s.start, s.id))

    def active(self, now: float) -> list[Silence]:
        return [s for s in self.all() if s.active(now)]

    def matching(self, alert: Alert, now: float) -> list[Silence]:
        """Active silences that match `alert`, the one ending last first."""
        hits = [s for s in self._silences.values() if s.active(now) and s.matches(alert)]
        return sorted(hits, key=lambda s: (-s.end, s.id))

    # -- the stage ----------------------------------------------------------------------

    def mutes(self, alert: Alert, now: float) -> str | None:
        hits = self.matching(alert, now)
        if not hits:
            return None
        detail = hits[0].describe(now, self.tz)
        return detail + (f" (+{len(hits) - 1} more)" if len(hits) > 1 else "")

    # -- time passing (pure queries) ------------------------------------------------------

    def reminder_time(self, s: Silence) -> float | None:
        """When the author of `s` should be reminded, or None (no reminder: the
        silence is shorter than the lead time, reminders are off, or it was ended
        by hand)."""
        lead = self.remind_before if s.remind_before is None else s.remind_before
        if lead <= 0 or s.expired_by is not None:
            return None
        at = s.end - lead
        return at if at > s.start else None

    def due_reminders(self, now: float, since: float | None = None) -> list[SilenceReminder]:
        """Reminders due at `now`.

        With `since` (the time of the previous call): exactly the reminders that
        fell due in (since, now] — call it every tick and each is returned once.
        Without: every silence now inside its reminder lead time; the caller
        sends each `key` once.
        """
        out = []
        for s in self.all():
            at = self.reminder_time(s)
            if at is None or not (at <= now < s.end):
                continue
            if since is not None and at <= since:
                continue
            left = until_text(s.end, now, self.tz)
            text = (f"your silence {s.id} ({', '.join(map(str, s.matchers))}: {s.reason}) "
                    f"ends at {left}; extend it if the work is not finished")
            out.append(SilenceReminder(s.id, s.author, s.end, at, text))
        return out

    def ended(self, since: float, now: float) -> list[Silence]:
        """Silences whose end fell in (since, now]: the engine logs them and
        re-decides the alarms they were muting (which may now notify)."""
        return [s for s in self.all() if since < s.end <= now]


# --- maintenance windows -------------------------------------------------------------------


class Window(Protocol):
    """Anything that says which interval, if any, is open at a time."""

    def occurrence(self, now: float) -> tuple[float, float] | None:
        """(start, end) of the interval open at `now`, or None."""


class RecurringWindow:
    """A recurring interval: starts by `cron` (croniter syntax) or by an iCalendar
    `rrule` (RFC 5545, e.g. 'FREQ=WEEKLY;BYDAY=TU;BYHOUR=8'), lasting `duration`
    seconds, computed in timezone `tz` so wall-clock times survive DST.

    `start`: for an rrule its DTSTART (required: it anchors the rule and gives the
    minute/second of each occurrence); for cron, optional, no window before it.
    """

    def __init__(self, duration: float, *, cron: str | None = None, rrule: str | None = None,
                 start: float | None = None, tz: str = "UTC"):
        if (cron is None) == (rrule is None):
            raise SilenceError("a window needs exactly one of cron: or rrule:")
        if not duration > 0:
            raise SilenceError("a window needs a duration > 0")
        self.duration = float(duration)
        self.cron, self.rrule, self.start, self.tz = cron, rrule, start, tz
        self._zone = zoneinfo.ZoneInfo(tz)
        self._rule = None
        if cron is not None and not croniter.is_valid(cron):
            raise SilenceError(f"'{cron}' is not a cron expression like '0 8 * * 2'")
        if rrule is not None:
            if start is None:
                raise SilenceError("an rrule window needs start: (its DTSTART)")
            text = rrule if rrule.upper().startswith("RRULE:") else f"RRULE:{rrule}"
            try:
                self._rule = rrulestr(text, dtstart=self._dt(start))
            except (ValueError, TypeError) as e:
                raise SilenceError(f"'{rrule}' is not an iCalendar RRULE: {e}") from None
        # (last start <= t, next start > t) of the last lookup: valid for t in between
        self._cache: tuple[float | None, float | None] | None = None

    def _dt(self, t: float) -> datetime:
        return datetime.fromtimestamp(t, self._zone)

    def _starts_around(self, now: float) -> tuple[float | None, float | None]:
        c = self._cache
        if c is not None and (c[0] is None or c[0] <= now) and (c[1] is None or now < c[1]):
            return c
        if self._rule is not None:
            prev = self._rule.before(self._dt(now), inc=True)
            nxt = self._rule.after(self._dt(now), inc=False)
            p = prev.timestamp() if prev else None
            n = nxt.timestamp() if nxt else None
        else:
            # croniter's get_prev excludes a start exactly at `now`: step just past it.
            it = croniter(self.cron, self._dt(now + 1e-3))
            p = it.get_prev(float)
            n = croniter(self.cron, self._dt(now)).get_next(float)
            if self.start is not None and p < self.start:
                p = None
            if self.start is not None and n < self.start:
                n = croniter(self.cron, self._dt(self.start - 1e-3)).get_next(float)
        self._cache = (p, n)
        return p, n

    def occurrence(self, now: float) -> tuple[float, float] | None:
        last, _ = self._starts_around(now)
        if last is not None and now < last + self.duration:
            return last, last + self.duration
        return None

    def next_start(self, now: float) -> float | None:
        """The next time a window opens after `now` (for "next maintenance: …")."""
        return self._starts_around(now)[1]

    def __repr__(self) -> str:
        how = f"cron '{self.cron}'" if self.cron else f"rrule '{self.rrule}'"
        return f"RecurringWindow({how}, {self.duration:g}s, {self.tz})"


class CalendarWindows:
    """The events of an iCalendar (.ics text) as windows — e.g. the facility's
    published machine schedule. Recurring events are expanded
    (recurring-ical-events); each open event's SUMMARY is available as `summary`."""

    def __init__(self, ics: str):
        import icalendar
        import recurring_ical_events

        try:
            self._cal = recurring_ical_events.of(icalendar.Calendar.from_ical(ics))
        except ValueError as e:
            raise SilenceError(f"not an iCalendar file: {e}") from None

    def _open(self, now: float):
        t = datetime.fromtimestamp(now, zoneinfo.ZoneInfo("UTC"))
        for ev in self._cal.between(t, datetime.fromtimestamp(now + 1e-3, t.tzinfo)):
            start, end = ev["DTSTART"].dt, ev["DTEND"].dt if "DTEND" in ev else None
            if not isinstance(start, datetime):
                continue  # all-day events: not a maintenance window
            s = start.timestamp()
            if isinstance(end, datetime):
                e = end.timestamp()
            else:
                e = s + ev["DURATION"].dt.total_seconds()
            if s <= now < e:
                yield s, e, str(ev.get("SUMMARY", ""))

    def occurrence(self, now: float) -> tuple[float, float] | None:
        spans = [(s, e) for s, e, _ in self._open(now)]
        return (min(s for s, _ in spans), max(e for _, e in spans)) if spans else None

    def summary(self, now: float) -> str | None:
        names = [n for _, _, n in self._open(now) if n]
        return "; ".join(names) or None


@dataclass(frozen=True)
class MaintenanceWindow:
    """A named window that mutes the alerts its matchers match while it is open."""

    id: str
    window: Window
    matchers: tuple[Matcher, ...]
    reason: str
    author: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "matchers", matchers(self.matchers))
        if not self.reason.strip():
            raise SilenceError(f"maintenance window {self.id} needs a reason")
        _guard_matchers(self.matchers, f"maintenance window {self.id}")


class ScheduleMuter:
    """The SCHEDULE stage: mutes what an open maintenance window matches."""

    reason = MuteReason.SCHEDULE

    def __init__(self, windows: Iterable[MaintenanceWindow] = (), *, tz: str = "UTC"):
        self.windows = list(windows)
        self.tz = tz

    def open_windows(self, now: float) -> list[tuple[MaintenanceWindow, float, float]]:
        out = []
        for w in self.windows:
            occ = w.window.occurrence(now)
            if occ is not None:
                out.append((w, *occ))
        return out

    def mutes(self, alert: Alert, now: float) -> str | None:
        labels = None
        for w, _, end in self.open_windows(now):
            labels = labels if labels is not None else alert.label_set()
            if _match_all(w.matchers, labels):
                return (f"maintenance window {w.id} until {until_text(end, now, self.tz)}: "
                        f"{w.reason}")
        return None
