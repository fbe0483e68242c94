"""Routes: who is told about an alarm, on which channel kinds, and which rule decided.

Semantics (Alertmanager's, on a flat list):

- Routes are tried in file order. The first that matches decides and stops the
  walk, unless it has `continue: true`, in which case later routes are tried
  too. No route matching means no route recipients (subscriptions still apply).
- A route matches when every condition it gives holds: `match.check` and
  `match.group` (a string or a list: one of), `match.severity` (that severity
  and worse), `match.labels` (each equal; the check's labels plus `check`,
  `group` and `mode`), and `modes:` (the beamline mode at that time; unknown
  mode = the config's default mode). OK never matches: it is not an alarm.
- Mode changes (`route_mode`) walk only the routes with `match: {kind: mode}`, with
  the same first-match/`continue` rule; alarm walks skip those routes. A mode route
  matches a change INTO one of its `modes:` (all changes without it). Quiet hours
  treat a mode change as MINOR (informational): a person in quiet hours is held.
- Receivers: `person:X`; `team:T` (every member); `oncall:T` (whoever is on
  call at that time — if nobody is, the whole team, with a note); `channel:C`.
- Each person is then reached on their channel kinds in order, with quiet
  hours applied (see `people.py`). A person named by several rules and
  subscriptions is one recipient that lists every way they were reached.

Everything here is pure: the time is an argument, calendars come parsed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from ..config.schema import Config, RouteConfig
from ..model import Severity
from ._time import iso, show
from .oncall import OnCallResolver
from .people import quiet_end, reach
from .subscriptions import subscribers

RecipientKind = Literal["person", "channel"]
# quiet hours hold a mode change as they hold a MINOR: it informs, it does not page
MODE_CHANGE_SEVERITY = Severity.MINOR


class UnknownCheck(KeyError):
    def __init__(self, check_id: str, known: Sequence[str]):
        super().__init__(check_id)
        self.check_id = check_id
        self.known = tuple(known)

    def __str__(self) -> str:
        return f"unknown check '{self.check_id}' (checks: {', '.join(self.known) or 'none'})"


@dataclass(frozen=True, slots=True)
class Recipient:
    """One person or named channel to notify.

    `destinations`: for a person, the channel kinds to use in order (after quiet
    hours); for a channel, its kind ("apprise", "slack", "email", "webhook").
    `via`: every rule that reached them, for humans ("routes[0] oncall:mx-support",
    "subscription people.ana.subscriptions[0]: follows group vacuum ...").
    `routes`: the indexes of the routes that named them, in order; empty when only a
    subscription did. `repeat`: the shortest `repeat:` of those routes.
    """

    name: str
    kind: RecipientKind
    destinations: tuple[str, ...]
    via: tuple[str, ...]
    routes: tuple[int, ...] = ()
    subscription: bool = False
    quiet: bool = False
    note: str = ""
    repeat: float | None = None

    @property
    def route(self) -> int | None:
        return self.routes[0] if self.routes else None

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.name}"

    @property
    def notifier_names(self) -> tuple[str, ...]:
        """Registry names of the notifiers to use, in order ("person:ana/signal")."""
        if self.kind == "channel":
            return (self.key,)
        return tuple(f"{self.key}/{d}" for d in self.destinations)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "destinations": list(self.destinations),
                "via": list(self.via), "routes": list(self.routes),
                "subscription": self.subscription, "quiet": self.quiet, "note": self.note,
                "repeat": self.repeat}


@dataclass(frozen=True, slots=True)
class Held:
    """A person a rule named who is not told now (quiet hours), and why.

    `until`: when their quiet hours end, so the alarm can be offered to them again
    then if it still matters; None when nothing will change by itself (no channel set).
    """

    name: str
    via: tuple[str, ...]
    routes: tuple[int, ...]
    subscription: bool
    why: str
    until: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "via": list(self.via), "routes": list(self.routes),
                "subscription": self.subscription, "why": self.why}


@dataclass(frozen=True, slots=True)
class RouteStep:
    """What happened to one route during the walk."""

    index: int
    tried: bool
    matched: bool
    why: str
    continue_: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"route": self.index, "tried": self.tried, "matched": self.matched,
                "why": self.why, "continue": self.continue_}


@dataclass(frozen=True)
class RoutingResult:
    check_id: str
    group: str
    severity: Severity
    mode: str
    at: float
    timezone: str
    recipients: tuple[Recipient, ...]
    held: tuple[Held, ...] = ()
    steps: tuple[RouteStep, ...] = ()
    matched: tuple[int, ...] = ()
    notes: tuple[str, ...] = ()
    resolved: bool = False
    label: str = ""  # what was routed, e.g. "escalation level 1 of routes[0]"
    kind: str = "alarm"  # or "mode": a beamline mode change (`Router.route_mode`)
    previous_mode: str | None = None  # for a mode change: the mode changed from

    @property
    def route(self) -> int | None:
        """The route that decided (the first that matched), or None."""
        return self.matched[0] if self.matched else None

    def recipient(self, name: str, kind: RecipientKind = "person") -> Recipient | None:
        for r in self.recipients:
            if r.name == name and r.kind == kind:
                return r
        return None

    @property
    def names(self) -> list[str]:
        return [r.key for r in self.recipients]

    def explain(self) -> list[str]:
        """Human lines: which rule decided, why the others did not, who is told on what."""
        tz = self.timezone
        what = "resolved notice for " if self.resolved else ""
        if self.kind == "mode":
            lines = [f"mode change {self.previous_mode or '?'} -> {self.mode}, "
                     f"at {show(self.at, tz)} (quiet hours: held like a MINOR)"]
        else:
            lines = [f"{self.label or what + 'check ' + self.check_id} (group {self.group}), "
                     f"{self.severity}, mode {self.mode}, at {show(self.at, tz)}"]
        for s in self.steps:
            status = "MATCH" if s.matched else ("no" if s.tried else "-")
            lines.append(f"  routes[{s.index}] {status:5} {s.why}")
        if self.matched:
            more = f" (then {', '.join(f'routes[{i}]' for i in self.matched[1:])})" \
                if len(self.matched) > 1 else ""
            lines.append(f"decided by routes[{self.matched[0]}]{more}")
        elif self.steps or not self.label:
            lines.append("no route matched")
        lines.append("told:" if self.recipients else "told: nobody")
        for r in self.recipients:
            dest = ", ".join(r.destinations) or "-"
            extra = f"; {r.note}" if r.note else ""
            lines.append(f"  {r.kind} {r.name}: {dest}  <- {'; '.join(r.via)}{extra}")
        if self.held:
            lines.append("not told now:")
            for h in self.held:
                again = f"; offered again {show(h.until, tz)}" if h.until else ""
                lines.append(f"  person {h.name}: {h.why}{again}  <- {'; '.join(h.via)}")
        for n in self.notes:
            lines.append(f"note: {n}")
        return lines

    @property
    def explanation(self) -> str:
        return "\n".join(self.explain())

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind, "previous_mode": self.previous_mode,
            "check": self.check_id, "group": self.group, "severity": str(self.severity),
            "mode": self.mode, "at": iso(self.at, self.timezone), "resolved": self.resolved,
            "route": self.route, "matched": list(self.matched),
            "steps": [s.to_json() for s in self.steps],
            "recipients": [r.to_json() for r in self.recipients],
            "held": [h.to_json() for h in self.held], "notes": list(self.notes),
        }


@dataclass
class _Entry:
    name: str
    kind: RecipientKind
    via: list[str] = field(default_factory=list)
    routes: list[int] = field(default_factory=list)
    subscription: bool = False
    repeat: float | None = None


class _Collector:
    """Receivers in the order first reached; one entry per person / channel (dedupe)."""

    def __init__(self) -> None:
        self.entries: dict[tuple[str, str], _Entry] = {}
        self.notes: list[str] = []

    def add(self, kind: RecipientKind, name: str, via: str, route: int | None = None,
            repeat: float | None = None, subscription: bool = False) -> None:
        e = self.entries.setdefault((kind, name), _Entry(name, kind))
        if via not in e.via:
            e.via.append(via)
        if route is not None and route not in e.routes:
            e.routes.append(route)
        e.subscription = e.subscription or subscription
        if repeat is not None:
            e.repeat = repeat if e.repeat is None else min(e.repeat, repeat)

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)


class Router:
    """Routes alarms of one config. `oncall` answers on-call questions (give one built
    with the teams' calendars when any team uses `ical:`)."""

    def __init__(self, config: Config, oncall: OnCallResolver | None = None):
        self.config = config
        self.oncall = oncall or OnCallResolver(config)
        self._checks = {c.id: c for c in config.checks}

    # -- the walk -------------------------------------------------------------------------

    def route(self, check_id: str, severity: Severity | str, at: float,
              mode: str | None = None, *, labels: Mapping[str, str] | None = None,
              resolved: bool = False, subscriptions: bool = True) -> RoutingResult:
        """Who is told that `check_id` is at `severity` at time `at` in `mode`.

        `resolved=True`: route the notice that the alarm is over; `severity` is then
        the severity people were told about, and routes with `send_resolved: false`
        are skipped.
        """
        check = self._checks.get(check_id)
        if check is None:
            raise UnknownCheck(check_id, list(self._checks))
        severity = Severity.parse(severity)
        out = _Collector()
        if mode is None:
            mode = self.config.modes.default
            out.note(f"mode not given: routed as the default mode '{mode}'")
        label_set = {**check.labels, **(labels or {}), "check": check_id,
                     "group": check.group, "mode": mode}
        steps: list[RouteStep] = []
        matched: list[int] = []
        stopped_by: int | None = None
        for i, r in enumerate(self.config.routes):
            if stopped_by is not None:
                steps.append(RouteStep(i, False, False,
                                       f"not tried: routes[{stopped_by}] matched without "
                                       "continue"))
                continue
            ok, why = self._matches(r, check_id, check.group, severity, mode, label_set)
            if not ok:
                steps.append(RouteStep(i, True, False, why, r.continue_))
                continue
            matched.append(i)
            # a resolved notice walks the routes exactly as the alarm did, so that a
            # route with send_resolved: false still stops the walk
            silent = resolved and not r.send_resolved
            if silent:
                why += "; send_resolved: false, so its receivers are not told"
            if r.continue_:
                why += "; continue: true, so later routes are tried too"
            else:
                stopped_by = i
                why += "; first match without continue: stops here"
            steps.append(RouteStep(i, True, True, why, r.continue_))
            if not silent:
                for target in r.to:
                    self._expand(out, target, at, f"routes[{i}] {target}", i, r.repeat)
        if subscriptions:
            for s in subscribers(self.config, check_id, check.group, severity):
                out.add("person", s.person,
                        f"subscription people.{s.person}.subscriptions[{s.index}]: {s.why}",
                        subscription=True)
        if severity == Severity.OK:
            out.note("OK is not an alarm, so no route matches it; resolved notices are "
                     "routed with the severity people were told about (resolved=True)")
        return self._finish(out, check_id, check.group, severity, mode, at, steps, matched,
                            resolved)

    def receivers(self, targets: Sequence[str], check_id: str, severity: Severity | str,
                  at: float, mode: str | None = None, *, route: int | None = None,
                  label: str = "", repeat: float | None = None) -> RoutingResult:
        """Expand a list of receivers (an escalation level) at time `at`, with quiet
        hours and on-call resolved at that time; no route walk, no subscriptions."""
        check = self._checks.get(check_id)
        if check is None:
            raise UnknownCheck(check_id, list(self._checks))
        severity = Severity.parse(severity)
        out = _Collector()
        prefix = f"{label} " if label else ""
        for target in targets:
            self._expand(out, target, at, f"{prefix}{target}", route, repeat)
        return self._finish(out, check_id, check.group, severity,
                            mode or self.config.modes.default, at, [], [], False, label)

    def route_mode(self, old: str, new: str, at: float) -> RoutingResult:
        """Who is told that the beamline mode changed from `old` to `new` at `at`.

        Only `kind: mode` routes are walked (first match, `continue`); their `modes:`
        are the modes changed INTO. No subscriptions: they follow checks and groups.
        People in quiet hours are held as for a MINOR: a mode change is news, not a page.
        """
        out = _Collector()
        steps: list[RouteStep] = []
        matched: list[int] = []
        stopped_by: int | None = None
        for i, r in enumerate(self.config.routes):
            if not r.takes_modes:
                steps.append(RouteStep(i, False, False, "kind alarm: takes alarms only"))
                continue
            if stopped_by is not None:
                steps.append(RouteStep(i, False, False, f"not tried: routes[{stopped_by}] "
                                                        "matched without continue"))
                continue
            if r.modes is not None and new not in r.modes:
                into = " or ".join(r.modes) or "in []"
                steps.append(RouteStep(i, True, False, f"changes into {into} only, not {new}",
                                       r.continue_))
                continue
            matched.append(i)
            why = f"a change into {new}" if r.modes is not None else "every mode change"
            if r.continue_:
                why += "; continue: true, so later routes are tried too"
            else:
                stopped_by = i
                why += "; first match without continue: stops here"
            steps.append(RouteStep(i, True, True, why, r.continue_))
            for target in r.to:
                self._expand(out, target, at, f"routes[{i}] {target}", i, None)
        result = self._finish(out, "", "", MODE_CHANGE_SEVERITY, new, at, steps, matched,
                              False, f"mode change {old} -> {new}")
        return replace(result, kind="mode", previous_mode=old)

    @staticmethod
    def _matches(r: RouteConfig, check_id: str, group: str, severity: Severity, mode: str,
                 labels: Mapping[str, str]) -> tuple[bool, str]:
        if r.takes_modes:
            return False, "kind mode: takes beamline mode changes, not alarms"
        if severity == Severity.OK:
            return False, "severity OK is not an alarm"
        said: list[str] = []
        m = r.match
        for key, value, wanted in (("check", check_id, m.check), ("group", group, m.group)):
            if wanted is None:
                continue
            options = [wanted] if isinstance(wanted, str) else list(wanted)
            if value not in options:
                return False, f"{key} '{value}' is not {' or '.join(options) or 'in []'}"
            said.append(f"{key} {value}")
        if m.severity is not None:
            floor = Severity.parse(m.severity)
            if severity < floor:
                return False, f"severity {severity} is below {m.severity}"
            said.append(f"severity {severity} >= {m.severity}")
        for key, value in m.labels.items():
            have = labels.get(key)
            if have != value:
                got = "unset" if have is None else f"'{have}'"
                return False, f"label {key} is {got}, not '{value}'"
            said.append(f"{key}={value}")
        if r.modes is not None:
            if mode not in r.modes:
                return False, f"mode {mode} is not {' or '.join(r.modes) or 'in []'}"
            said.append(f"mode {mode}")
        return True, ", ".join(said) if said else "matches every alarm"

    # -- receivers ------------------------------------------------------------------------

    def _expand(self, out: _Collector, target: str, at: float, via: str, route: int | None,
                repeat: float | None) -> None:
        kind, _, name = target.partition(":")
        cfg = self.config
        if kind == "channel":
            if name in cfg.channels:
                out.add("channel", name, via, route, repeat)
            else:
                out.note(f"{via}: unknown channel '{name}', skipped")
        elif kind == "person":
            if name in cfg.people:
                out.add("person", name, via, route, repeat)
            else:
                out.note(f"{via}: unknown person '{name}', skipped")
        elif kind in ("team", "oncall"):
            team = cfg.teams.get(name)
            if team is None:
                out.note(f"{via}: unknown team '{name}', skipped")
                return
            if kind == "oncall":
                who = self.oncall.who(name, at, with_until=False)
                if who.person is not None:
                    out.add("person", who.person, via, route, repeat)
                    out.note(f"{target}: {who.person} is on call ({who.reason})")
                    return
                out.note(f"{target}: {who.reason}; told every member of {name} instead")
                via = f"{via} (nobody on call: whole team)"
            for member in team.members:
                if member in cfg.people:
                    out.add("person", member, via, route, repeat)
        else:
            out.note(f"{via}: unknown receiver kind '{kind}', skipped")

    def _finish(self, out: _Collector, check_id: str, group: str, severity: Severity,
                mode: str, at: float, steps: list[RouteStep], matched: list[int],
                resolved: bool, label: str = "") -> RoutingResult:
        recipients: list[Recipient] = []
        held: list[Held] = []
        for e in out.entries.values():
            if e.kind == "channel":
                ch = self.config.channels[e.name]
                kind = ch.kind or "apprise"
                recipients.append(Recipient(e.name, "channel", (kind,), tuple(e.via),
                                            tuple(e.routes), e.subscription, False, "",
                                            e.repeat))
                continue
            r = reach(e.name, self.config.people[e.name], severity, at, self.config.timezone)
            if not r.destinations:
                until = self.quiet_end(e.name, at) if r.quiet else None
                held.append(Held(e.name, tuple(e.via), tuple(e.routes), e.subscription, r.note,
                                 until))
                continue
            recipients.append(Recipient(e.name, "person", r.destinations, tuple(e.via),
                                        tuple(e.routes), e.subscription, r.quiet, r.note,
                                        e.repeat))
        return RoutingResult(check_id, group, severity, mode, at, self.config.timezone,
                             tuple(recipients), tuple(held), tuple(steps), tuple(matched),
                             tuple(out.notes), resolved, label)

    # -- quiet hours ----------------------------------------------------------------------

    def quiet_end(self, person_id: str, at: float) -> float | None:
        """When the quiet hours `person_id` is in at `at` end, in their timezone
        (daylight-saving safe); None when they are not in quiet hours."""
        return quiet_end(self.config.people[person_id], at, self.config.timezone)

    def reoffer(self, held: Held, severity: Severity | str) -> Recipient | None:
        """The person a page was held from, reached as they are when their quiet hours
        end (`held.until`); None when they never will be (no quiet end, no channel)."""
        person = self.config.people.get(held.name)
        if held.until is None or person is None:
            return None
        r = reach(held.name, person, Severity.parse(severity), held.until, self.config.timezone)
        if not r.destinations:
            return None
        when = show(held.until, person.timezone or self.config.timezone)
        return Recipient(held.name, "person", r.destinations,
                         (*held.via, f"held by quiet hours until {when}"), held.routes,
                         held.subscription, r.quiet, r.note)
