"""Who is on call for a team at a time T. Pure: no I/O, the time passed in.

Precedence, first that answers wins:

1. an **override** covering T (`teams.X.overrides`; when several do, the one
   listed last wins, as a later line in a file wins);
2. the team's **iCalendar** feed (`teams.X.ical`), when it has an event at T
   whose ATTENDEE (e-mail or CN) or SUMMARY names a person;
3. the team's **rota** (`teams.X.rota`);
4. nobody — and the router then tells the whole team instead.

Rota arithmetic: shift k starts at `start + k * every`. When `every` is a
whole number of hours that sum is done on the wall clock of the rota's
timezone, so a weekly rota that starts Monday 09:00 hands over at 09:00 local
time all year, across daylight-saving changes (the week that contains the
change is an hour shorter or longer). Other periods (e.g. 90m) are exact
elapsed time from `start`. Before `start` nobody is on call.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import TYPE_CHECKING, Any, Literal

from ..config.schema import Config, OverrideConfig, PersonConfig, RotaConfig, TeamConfig
from ..config.types import format_duration
from ._time import epoch_to_local, iso, local_to_epoch, show, to_epoch, zone
from .calendars import CalendarHolder, Feed, without_secrets

if TYPE_CHECKING:  # pragma: no cover
    import icalendar

ShiftSource = Literal["override", "ical", "rota"]
HORIZON = 62 * 86400.0  # how far ahead `until` and `upcoming` look


@dataclass(frozen=True, slots=True)
class Shift:
    """One stretch of time during which `person` is on call for a team."""

    person: str
    start: float
    end: float | None
    source: ShiftSource
    detail: str  # "rota shift 12", "overrides[1]", "calendar event 'On call: ana'"

    def covers(self, t: float) -> bool:
        return self.start <= t and (self.end is None or t < self.end)


@dataclass(frozen=True, slots=True)
class OnCall:
    """The answer to "who is on call for `team` at `at`"."""

    team: str
    at: float
    person: str | None
    source: ShiftSource | None  # None: nobody
    since: float | None  # start of the shift that decided
    until: float | None  # the next time the answer changes (None: not within the horizon)
    reason: str

    def to_json(self, tz: str) -> dict[str, Any]:
        return {"team": self.team, "at": iso(self.at, tz), "person": self.person,
                "source": self.source, "since": iso(self.since, tz),
                "until": iso(self.until, tz), "reason": self.reason}


# --- rota ---------------------------------------------------------------------------------


class Rota:
    """`every`/`start`/`order` as a function of time."""

    def __init__(self, order: Iterable[str], every: float, start: datetime, tz: tzinfo):
        self.order = tuple(order)
        if not self.order:
            raise ValueError("a rota needs at least one person in order")
        if every <= 0:
            raise ValueError("a rota's every must be positive")
        self.every = float(every)
        self.tz = tz
        if start.tzinfo is not None:
            start = start.astimezone(tz).replace(tzinfo=None)
        self.start_local = start
        self.start = local_to_epoch(start, tz)
        self.civil = self.every % 3600 == 0  # whole hours: keep the wall-clock time of day

    @classmethod
    def from_config(cls, rota: RotaConfig, default_tz: str) -> Rota:
        return cls(rota.order, rota.every, rota.start, zone(rota.timezone or default_tz))

    def handover(self, k: int) -> float:
        """When shift k starts (shift 0 at `start`)."""
        if self.civil:
            return local_to_epoch(self.start_local + timedelta(seconds=k * self.every), self.tz)
        return self.start + k * self.every

    def index_at(self, t: float) -> int | None:
        """The shift running at t, or None before the rota starts."""
        if t < self.start:
            return None
        if self.civil:
            elapsed = (epoch_to_local(t, self.tz) - self.start_local).total_seconds()
        else:
            elapsed = t - self.start
        k = max(0, math.floor(elapsed / self.every))
        while k > 0 and self.handover(k) > t:
            k -= 1
        while self.handover(k + 1) <= t:
            k += 1
        return k

    def shift(self, k: int) -> Shift:
        return Shift(self.order[k % len(self.order)], self.handover(k), self.handover(k + 1),
                     "rota", f"rota shift {k}")

    def shift_at(self, t: float) -> Shift | None:
        k = self.index_at(t)
        return None if k is None else self.shift(k)

    def handovers_after(self, t: float, until: float, limit: int = 500) -> list[float]:
        k = self.index_at(t)
        k = -1 if k is None else k
        out: list[float] = []
        while len(out) < limit:
            k += 1
            h = self.handover(k)
            if h > until:
                break
            if h > t:
                out.append(h)
        return out

    def describe(self) -> str:
        return (f"every {format_duration(self.every)} from "
                f"{self.start_local:%Y-%m-%d %H:%M} {getattr(self.tz, 'key', self.tz)}"
                + (", handover at that time of day" if self.civil and self.every % 86400 == 0
                   else ""))


# --- iCalendar ----------------------------------------------------------------------------


class PeopleIndex:
    """Finds the person an e-mail address, a calendar CN or a SUMMARY names."""

    def __init__(self, people: Mapping[str, PersonConfig]):
        self.ids = {pid.lower(): pid for pid in people}
        self.emails = {p.email.lower(): pid for pid, p in people.items() if p.email}
        self.names = {p.name.lower(): pid for pid, p in people.items() if p.name}

    def by_attendee(self, address: str, cn: str | None) -> str | None:
        addr = re.sub(r"^mailto:", "", str(address).strip(), flags=re.I).lower()
        if addr in self.emails:
            return self.emails[addr]
        if addr in self.ids:
            return self.ids[addr]
        if cn:
            key = cn.strip().lower()
            return self.names.get(key) or self.ids.get(key)
        return None

    def by_summary(self, summary: str, prefer: Iterable[str] = ()) -> str | None:
        """Exact id or name first; else the one person whose id or name is a whole word
        in the summary (preferring team members when several are)."""
        text = summary.strip().lower()
        if not text:
            return None
        if text in self.ids:
            return self.ids[text]
        if text in self.names:
            return self.names[text]
        found: list[str] = []
        for table in (self.names, self.ids):  # full names before ids: "Ana Silva" over "ana"
            for key, pid in table.items():
                if pid not in found and re.search(rf"(?<![\w-]){re.escape(key)}(?![\w-])", text):
                    found.append(pid)
        if len(found) > 1:
            members = [p for p in found if p in set(prefer)]
            found = members if len(members) == 1 else found
        return found[0] if len(found) == 1 else None


class CalendarRota:
    """A team's iCalendar feed: each event (recurring ones expanded) names the person
    on call from its start to its end. Floating times and all-day events are read in
    the team's timezone."""

    def __init__(self, calendar: icalendar.Calendar, people: PeopleIndex, tz: tzinfo,
                 members: Iterable[str] = ()):
        import recurring_ical_events

        self.query = recurring_ical_events.of(calendar, skip_bad_series=True)
        self.people = people
        self.tz = tz
        self.members = tuple(members)

    def _events(self, start: float, end: float) -> list[tuple[float, float, Any]]:
        """Events overlapping [start, end], as (start, end, event), in calendar order."""
        pad = 86400  # floating and all-day events are matched in the team's zone below
        lo = datetime.fromtimestamp(start - pad, UTC)
        hi = datetime.fromtimestamp(end + pad, UTC)
        out = []
        for ev in self.query.between(lo, hi):
            try:
                s, e = to_epoch(ev.start, self.tz), to_epoch(ev.end, self.tz)
            except (KeyError, ValueError, TypeError, AttributeError):  # no DTSTART etc.
                continue
            if e > start and s <= end:
                out.append((s, e, ev))
        return out

    def person_of(self, event: Any) -> tuple[str | None, str]:
        attendees = event.get("ATTENDEE")
        if attendees is not None:
            for a in attendees if isinstance(attendees, list) else [attendees]:
                cn = getattr(a, "params", {}).get("CN")
                pid = self.people.by_attendee(str(a), cn)
                if pid:
                    return pid, f"ATTENDEE {a}"
        summary = str(event.get("SUMMARY", ""))
        pid = self.people.by_summary(summary, self.members)
        if pid:
            return pid, "SUMMARY"
        return None, ""

    def shift_at(self, t: float) -> tuple[Shift | None, str]:
        """The event naming a person at t; when several do, the one that started last
        (a swap put on top of a weekly series wins)."""
        best: tuple[float, float, int] | None = None
        chosen: Shift | None = None
        unknown: list[str] = []
        for i, (s, e, ev) in enumerate(self._events(t, t)):
            if not (s <= t < e):
                continue
            summary = str(ev.get("SUMMARY", "")).strip()
            pid, how = self.person_of(ev)
            if pid is None:
                unknown.append(summary or "(no summary)")
                continue
            key = (-s, e, i)
            if best is None or key < best:
                best = key
                chosen = Shift(pid, s, e, "ical", f"calendar event '{summary}' ({how})")
        note = ""
        if unknown:
            note = "; events naming nobody in people: " + ", ".join(f"'{u}'" for u in unknown)
        return chosen, note

    def boundaries_after(self, t: float, until: float) -> list[float]:
        out = set()
        for s, e, _ in self._events(t, until):
            for b in (s, e):
                if t < b <= until:
                    out.add(b)
        return sorted(out)


# --- the resolver ---------------------------------------------------------------------------


class OnCallResolver:
    """Answers "who is on call for team T at time t" for every team of a config.

    `calendars`: the parsed iCalendar feed of each team that has `ical:` (see
    `calendars.load_calendars`, which does the reading); `calendar_errors`: why a
    feed could not be read, shown in the answer. A team whose feed is missing falls
    back to its rota, if it has one.
    """

    def __init__(self, config: Config,
                 calendars: Mapping[str, icalendar.Calendar] | None = None,
                 calendar_errors: Mapping[str, str] | None = None,
                 horizon: float = HORIZON, *, feeds: CalendarHolder | None = None):
        """`feeds`: the holder a running engine's refresher keeps current (read at
        each question); else `calendars` and `calendar_errors`, read once."""
        self.config = config
        self.horizon = horizon
        self.feeds = feeds or CalendarHolder.of(config, calendars, calendar_errors)
        self._people = PeopleIndex(config.people)
        self._expanded: dict[str, tuple[Feed, CalendarRota]] = {}
        self.rotas: dict[str, Rota] = {}
        self.tzname: dict[str, str] = {}
        for name, team in config.teams.items():
            tzname = (team.rota.timezone if team.rota and team.rota.timezone
                      else config.timezone)
            self.tzname[name] = tzname
            if team.rota:
                self.rotas[name] = Rota.from_config(team.rota, config.timezone)

    @property
    def calendar_errors(self) -> dict[str, str]:
        return {t: f.error for t, f in self.feeds.feeds.items() if f.error}

    @property
    def calendars(self) -> dict[str, CalendarRota]:
        """The expanded calendar of each team whose feed has one now."""
        return {t: cal for t in self.config.teams if (cal := self._calendar(t)) is not None}

    def _calendar(self, team: str) -> CalendarRota | None:
        """The team's current feed, expanded once per copy read."""
        feed = self.feeds.get(team)
        cfg = self.config.teams.get(team)
        if feed is None or feed.calendar is None or cfg is None or not cfg.ical:
            return None
        seen = self._expanded.get(team)
        if seen is None or seen[0].calendar is not feed.calendar:
            seen = (feed, CalendarRota(feed.calendar, self._people, zone(self.tzname[team]),
                                       cfg.members))
            self._expanded[team] = seen
        return seen[1]

    def stale_note(self, team: str) -> str:
        """'calendar … stale since …' when the team's latest read failed and an older
        copy is in use, else ''."""
        feed = self.feeds.get(team)
        if feed is None or not feed.stale:
            return ""
        text = (f"calendar {feed.source} stale since {show(feed.read_at, self.tzname[team])}"
                f": {feed.error}")
        return without_secrets(text, feed.source)

    @property
    def teams(self) -> list[str]:
        return list(self.config.teams)

    def _team(self, team: str) -> TeamConfig:
        try:
            return self.config.teams[team]
        except KeyError:
            known = ", ".join(self.config.teams) or "none"
            raise KeyError(f"unknown team '{team}' (teams: {known})") from None

    def _override_at(self, team: str, t: float) -> Shift | None:
        tz = zone(self.tzname[team])
        for i in reversed(range(len(self._team(team).overrides))):
            o: OverrideConfig = self._team(team).overrides[i]
            s, e = to_epoch(o.start, tz), to_epoch(o.end, tz)
            if s <= t < e:
                return Shift(o.person, s, e, "override", f"overrides[{i}]")
        return None

    def shift_at(self, team: str, t: float) -> tuple[Shift | None, str]:
        """The shift deciding who is on call at t, and notes (why lower layers did not
        decide, or why nobody is on call)."""
        cfg = self._team(team)
        override = self._override_at(team, t)
        if override is not None:
            return override, ""
        notes: list[str] = []
        if cfg.ical:
            cal = self._calendar(team)
            if cal is None:
                feed = self.feeds.get(team)
                why = feed.error if feed is not None and feed.error else "not loaded yet"
                notes.append(f"calendar {cfg.ical} unavailable: {why}")
            else:
                if stale := self.stale_note(team):
                    notes.append(stale)
                try:
                    shift, note = cal.shift_at(t)
                except Exception as e:  # noqa: BLE001 - a feed must never stop routing
                    shift, note = None, f"; cannot expand it: {type(e).__name__}: {e}"
                if shift is not None:
                    return shift, "; ".join([*notes, note.lstrip("; ")]).strip("; ")
                notes.append(f"no event in calendar {cfg.ical} names anyone at this time"
                             + note)
        rota = self.rotas.get(team)
        if rota is not None:
            shift = rota.shift_at(t)
            if shift is not None:
                return shift, "; ".join(notes)
            notes.append(f"the rota starts {show(rota.start, self.tzname[team])}")
        elif not cfg.ical:
            notes.append(f"team '{team}' has no rota or ical")
        return None, "; ".join(notes)

    def _boundaries(self, team: str, t: float, until: float) -> list[float]:
        cfg = self._team(team)
        tz = zone(self.tzname[team])
        out: set[float] = set()
        for o in cfg.overrides:
            for b in (to_epoch(o.start, tz), to_epoch(o.end, tz)):
                if t < b <= until:
                    out.add(b)
        if team in self.rotas:
            out.update(self.rotas[team].handovers_after(t, until))
        if (cal := self._calendar(team)) is not None:
            try:
                out.update(cal.boundaries_after(t, until))
            except Exception:  # noqa: BLE001 - shift_at already says what is wrong
                pass
        return sorted(out)

    def until(self, team: str, t: float, person: str | None) -> float | None:
        """The first time after t at which someone other than `person` is on call."""
        for b in self._boundaries(team, t, t + self.horizon):
            shift, _ = self.shift_at(team, b)
            if (shift.person if shift else None) != person:
                return b
        return None

    def who(self, team: str, at: float, *, with_until: bool = True) -> OnCall:
        shift, note = self.shift_at(team, at)
        if shift is None:
            until = self.until(team, at, None) if with_until else None
            return OnCall(team, at, None, None, None, until, "nobody on call: " + note)
        until = self.until(team, at, shift.person) if with_until else None
        reason = self._describe(team, shift)
        if note:
            reason += f" ({note})"
        return OnCall(team, at, shift.person, shift.source, shift.start, until, reason)

    def _describe(self, team: str, shift: Shift) -> str:
        tzname = self.tzname[team]
        span = f"{show(shift.start, tzname)} → {show(shift.end, tzname)}"
        if shift.source == "rota":
            return f"{shift.detail}, {span}, rota {self.rotas[team].describe()}"
        return f"{shift.detail}, {span}"

    def everyone(self, at: float, *, with_until: bool = True) -> list[OnCall]:
        """Every team that can have someone on call (rota, ical or overrides)."""
        return [self.who(t, at, with_until=with_until)
                for t, cfg in self.config.teams.items() if cfg.rota or cfg.ical or cfg.overrides]

    def upcoming(self, team: str, at: float, count: int = 3) -> list[OnCall]:
        """The next `count` changes of who is on call after `at`."""
        out: list[OnCall] = []
        t = at
        current = self.who(team, at, with_until=False).person
        for b in self._boundaries(team, at, at + self.horizon):
            if len(out) >= count:
                break
            if b <= t:
                continue
            nxt = self.who(team, b, with_until=False)
            if nxt.person != current:
                out.append(nxt)
                current = nxt.person
        return out
