"""People's own settings and on-call, changed at run time from any front end:
subscriptions, quiet hours, on-call takeovers — the service functions.

Changes are written as runtime overlays (store/overlays.py) over the YAML file,
audited, picked up by the running engine within a tick, and shown by
`beamwatch config diff`. Errors are `ServiceError`s meant for the user as is.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass

from .. import timefmt
from ..config.schema import SEVERITY_NAMES, Config, QuietHours, SubscriptionConfig
from ..routing.oncall import OnCall, OnCallResolver
from ..routing.overlays import apply
from ..routing.subscriptions import matches
from ..store import Store
from ..store.overlays import Overlay, OverlayStore
from ..timefmt import format_duration, parse_duration
from . import audit
from .noise import ServiceError, _did_you_mean

ALL = ("all", "*", "everything")
# a change reads what is in force and writes it back whole: one at a time in this process
# (the Slack bot answers four requests at once)
_changing = threading.RLock()
TAKEOVER_DEFAULT = 12 * 3600.0  # when the shift's end is unknown
TAKEOVER_MAX = 7 * 86400.0


def overlays(store: Store) -> list[Overlay]:
    return OverlayStore(store).active()


def in_force(config: Config, store: Store, now: float | None = None) -> Config:
    """The config with the runtime overlays applied: what the engine routes with."""
    now = time.time() if now is None else now
    return apply(config, overlays(store), now)[0]


def _person(config: Config, person: str | None) -> str:
    if person is None:
        raise ServiceError("you are not linked to a configured person: an admin adds your "
                           "Slack member id as people.NAME.slack in the config")
    if person not in config.people:
        raise ServiceError(f"unknown person '{person}'{_did_you_mean(person, config.people)}")
    return person


# --- subscriptions ------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    kind: str  # check, group, all
    name: str

    def __str__(self) -> str:
        return "every check" if self.kind == "all" else f"{self.kind} {self.name}"


def target(config: Config, text: str) -> Target:
    """A check id, a group, or all; `check:ID` / `group:NAME` when a name is both."""
    word = text.strip()
    kind, sep, name = word.partition(":")
    if sep and kind in ("check", "group"):
        word = name
    elif word.lower() in ALL:
        return Target("all", "")
    groups = {c.group for c in config.checks}
    if (not sep or kind == "check") and config.has_check(word):
        return Target("check", word)
    if (not sep or kind == "group") and word in groups:
        return Target("group", word)
    hint = _did_you_mean(word, [*config.check_ids, *groups])
    raise ServiceError(f"'{word}' is neither a check nor a group{hint}")


def subscriptions(config: Config, store: Store, person: str | None) -> list[SubscriptionConfig]:
    pid = _person(config, person)
    return list(in_force(config, store).people[pid].subscriptions)


def describe(subs: list[SubscriptionConfig]) -> list[str]:
    out = []
    for s in subs:
        what = [f"check {c}" for c in s.checks] + [f"group {g}" for g in s.groups]
        out.append(f"{', '.join(what) or 'every check'} at {s.severity} and worse")
    return out


def _without(subs: list[SubscriptionConfig], t: Target) -> list[SubscriptionConfig]:
    if t.kind == "all":
        return [s for s in subs if s.checks or s.groups]
    out = []
    for s in subs:
        if not (s.checks or s.groups):
            out.append(s)
            continue
        checks = [c for c in s.checks if not (t.kind == "check" and c == t.name)]
        groups = [g for g in s.groups if not (t.kind == "group" and g == t.name)]
        if checks or groups:  # emptied: dropped, not turned into "every check"
            out.append(s.model_copy(update={"checks": checks, "groups": groups}))
    return out


def subscribe(config: Config, store: Store, person: str | None, what: str,
              severity: str = "minor", *, actor: str, via: str,
              now: float | None = None) -> str:
    now = time.time() if now is None else now
    pid = _person(config, person)
    sev = severity.lower()
    if sev not in SEVERITY_NAMES:
        raise ServiceError(f"severity '{severity}': one of {', '.join(SEVERITY_NAMES)}")
    t = target(config, what)
    with _changing:
        _subscribe(config, store, pid, t, sev, actor, via, now)
    audit.record(store, actor, via, "subscribe", pid, f"{t} at {sev} and worse", now=now)
    return f"{pid} now follows {t} at {sev} and worse"


def _subscribe(config: Config, store: Store, pid: str, t: Target, sev: str, actor: str,
               via: str, now: float) -> None:
    subs = _without(subscriptions(config, store, pid), t)
    if t.kind == "all":
        subs.append(SubscriptionConfig(severity=sev))
    else:
        key = "checks" if t.kind == "check" else "groups"
        for i, s in enumerate(subs):
            if s.severity == sev and (s.checks or s.groups):
                subs[i] = s.model_copy(update={key: [*getattr(s, key), t.name]})
                break
        else:
            subs.append(SubscriptionConfig(**{key: [t.name]}, severity=sev))
    _put_subs(store, pid, subs, actor, via, now)


def unsubscribe(config: Config, store: Store, person: str | None, what: str, *, actor: str,
                via: str, now: float | None = None) -> str:
    now = time.time() if now is None else now
    pid = _person(config, person)
    t = target(config, what)
    with _changing:
        before = subscriptions(config, store, pid)
        subs = [] if t.kind == "all" else _without(before, t)
        if subs == before:
            raise ServiceError(f"{pid} does not follow {t} by name; following: "
                               f"{'; '.join(describe(before)) or 'nothing'}")
        _put_subs(store, pid, subs, actor, via, now)
    audit.record(store, actor, via, "unsubscribe", pid, str(t), now=now)
    return f"{pid} no longer follows {t}" + ("" if subs else " (no subscriptions left)")


def _put_subs(store: Store, pid: str, subs: list[SubscriptionConfig], actor: str, via: str,
              now: float) -> None:
    value = [s.model_dump(mode="json") for s in subs]
    OverlayStore(store).put("subscriptions", pid, value, actor=actor, via=via, now=now)


def following(config: Config, store: Store, person: str | None, check_id: str,
              severity) -> str | None:
    """Why `person` hears about `check_id` at `severity` through a subscription, if they do."""
    pid = _person(config, person)
    group = config.check(check_id).group
    for s in subscriptions(config, store, pid):
        if why := matches(s, check_id, group, severity):
            return why
    return None


# --- quiet hours --------------------------------------------------------------------------

_QUIET = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)\s*[-–]\s*([01]?\d|2[0-3]):([0-5]\d)$")


def set_quiet(config: Config, store: Store, person: str | None, text: str, *, actor: str,
              via: str, now: float | None = None) -> str:
    """`22:00-07:00` (only MAJOR and worse then, on the channels the file allows at night),
    `off` (never quiet), or `reset` (the file's quiet hours again)."""
    now = time.time() if now is None else now
    pid = _person(config, person)
    word = text.strip().lower()
    ov = OverlayStore(store)
    if word == "reset":
        ov.reset("quiet_hours", pid, actor=actor, now=now)
        audit.record(store, actor, via, "quiet", pid, "reset to the config file", now=now)
        q = config.people[pid].quiet_hours
        return f"{pid}: quiet hours as in the config file: " + (
            f"{q.start}-{q.end}" if q else "none")
    if word == "off":
        ov.put("quiet_hours", pid, None, actor=actor, via=via, now=now)
        audit.record(store, actor, via, "quiet", pid, "off", now=now)
        return f"{pid}: no quiet hours; every alarm you follow reaches you at any hour"
    m = _QUIET.match(word)
    if not m:
        raise ServiceError(f"'{text}' is not HH:MM-HH:MM (like 22:00-07:00), off or reset")
    start, end = f"{int(m[1]):02d}:{m[2]}", f"{int(m[3]):02d}:{m[4]}"
    if start == end:
        raise ServiceError("start and end are the same time: say off to never be quiet")
    old = config.people[pid].quiet_hours
    quiet = QuietHours(start=start, end=end, channels=list(old.channels) if old else [])
    ov.put("quiet_hours", pid, quiet.model_dump(mode="json"), actor=actor, via=via, now=now)
    audit.record(store, actor, via, "quiet", pid, f"{start}-{end}", now=now)
    tz = config.people[pid].timezone or config.timezone
    return f"{pid}: quiet {start}-{end} {tz}: only MAJOR and worse reach you then"


# --- on-call ------------------------------------------------------------------------------


def resolver(config: Config, store: Store) -> OnCallResolver:
    return OnCallResolver(in_force(config, store))


def oncall(config: Config, store: Store, now: float | None = None,
           running: OnCallResolver | None = None) -> list[OnCall]:
    """Who is on call now. `running`: the running engine's resolver (with its calendar
    feeds and the overlays), when the question is asked inside `beamwatch run`."""
    now = time.time() if now is None else now
    return (running or resolver(config, store)).everyone(now)


def take_oncall(config: Config, store: Store, person: str | None, team: str | None = None,
                duration: str | float | None = None, *, actor: str, via: str,
                now: float | None = None, running: OnCallResolver | None = None) -> str:
    """`person` is on call for `team` (theirs, if they are in one team) from now for
    `duration` (default: until the current shift ends, else 12 h; at most 7 days)."""
    now = time.time() if now is None else now
    pid = _person(config, person)
    teams = [name for name, t in config.teams.items() if pid in t.members]
    if team is None:
        if len(teams) != 1:
            raise ServiceError(f"{pid} is in {len(teams)} teams ({', '.join(teams) or 'none'})"
                               ": say which, e.g. oncall take TEAM")
        team = teams[0]
    elif team not in config.teams:
        raise ServiceError(f"unknown team '{team}'{_did_you_mean(team, config.teams)}; "
                           f"teams: {', '.join(config.teams) or 'none'}")
    elif pid not in config.teams[team].members:
        raise ServiceError(f"{pid} is not a member of team {team} "
                           f"({', '.join(config.teams[team].members)})")
    with _changing:
        end = now + _takeover_length(config, store, team, pid, duration, now, running)
        value = {"person": pid, "start": now, "end": end}
        OverlayStore(store).put("oncall", team, value, actor=actor, via=via, now=now)
    length = format_duration(end - now)
    audit.record(store, actor, via, "oncall take", team, f"{pid} for {length}", now=now)
    return f"{pid} is on call for {team} for {length}"


def _takeover_length(config: Config, store: Store, team: str, pid: str,
                     duration: str | float | None, now: float,
                     running: OnCallResolver | None) -> float:
    if duration is not None:
        try:
            seconds = parse_duration(duration)
        except ValueError as e:
            raise ServiceError(f"oncall take: {e}") from None
        if not 0 < seconds <= TAKEOVER_MAX:
            raise ServiceError(f"oncall take: between 1s and {format_duration(TAKEOVER_MAX)}")
        return seconds
    who = (running or resolver(config, store)).who(team, now)
    if who.person != pid and who.until is not None and who.until - now <= TAKEOVER_MAX:
        return who.until - now  # the rest of the shift being taken over
    return TAKEOVER_DEFAULT


# --- what differs from the file -------------------------------------------------------------


@dataclass(frozen=True)
class OverlayLine:
    overlay: Overlay
    path: str  # people.jdoe.subscriptions, teams.mx-support.overrides
    was: str
    now: str

    def to_json(self) -> dict:
        o = self.overlay
        return {"id": o.id, "path": self.path, "file": self.was, "in_force": self.now,
                "by": o.actor, "via": o.via, "time": o.time}


def diff(config: Config, store: Store, now: float | None = None
         ) -> tuple[list[OverlayLine], list[str]]:
    """What the overlays change against the file, and the overlays that no longer fit."""
    now = time.time() if now is None else now
    active = overlays(store)
    _, skipped = apply(config, active, now)
    lines = []
    for o in active:
        if o.kind == "subscriptions" and o.target in config.people:
            was = config.people[o.target].subscriptions
            lines.append(OverlayLine(o, f"people.{o.target}.subscriptions",
                                     "; ".join(describe(list(was))) or "none",
                                     "; ".join(describe([SubscriptionConfig(**s)
                                                         for s in o.value])) or "none"))
        elif o.kind == "quiet_hours" and o.target in config.people:
            q = config.people[o.target].quiet_hours
            lines.append(OverlayLine(o, f"people.{o.target}.quiet_hours",
                                     f"{q.start}-{q.end}" if q else "none",
                                     f"{o.value['start']}-{o.value['end']}" if o.value
                                     else "off"))
        elif o.kind == "oncall" and o.target in config.teams and o.value["end"] > now:
            lines.append(OverlayLine(o, f"teams.{o.target}.overrides", "—",
                                     f"{o.value['person']} until "
                                     f"{timefmt.show(o.value['end'], config.timezone)} "
                                     f"(in {format_duration(o.value['end'] - now)})"))
    return lines, skipped
