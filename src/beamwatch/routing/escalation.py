"""Escalation levels and repeats of a route, as pure functions of time.

`escalate: {after: 15m, to: [...]}` or a list of such levels. Each level's
`after` counts from the *first* notification of the alarm (not from the level
before), so a list reads as a timeline: 15m -> the team, 1h -> the group
leader. Levels are used in order of `after`. Each level is expanded at the
moment it fires (first notification + after): the person on call and quiet
hours are those of that moment. Escalation stops when the alarm is
acknowledged or resolves; that is the caller's (outbox's) state, passed in
here as `done` (how many levels were already sent).

`repeat: 1h` re-sends to the route's recipients every hour while the alarm is
active and not acknowledged.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..config.schema import Config
from ..model import Severity
from .router import Router, RoutingResult


@dataclass(frozen=True, slots=True)
class EscalationLevel:
    route: int  # index into routes
    level: int  # 1 for the first escalation (0 is the first notification)
    after: float  # seconds after the first notification
    to: tuple[str, ...]


@dataclass(frozen=True)
class EscalationStep:
    level: EscalationLevel
    at: float  # first notification + after
    result: RoutingResult  # who this level tells, at that moment


def levels(config: Config, route: int) -> list[EscalationLevel]:
    """The escalation levels of `routes[route]`, in order of `after`."""
    escalations = sorted(config.routes[route].escalations, key=lambda e: e.after)
    return [EscalationLevel(route, n, e.after, tuple(e.to))
            for n, e in enumerate(escalations, start=1)]


def plan(router: Router, result: RoutingResult, first_notified: float,
         mode: str | None = None) -> list[EscalationStep]:
    """Every escalation level of every route that matched in `result`, each expanded at
    the time it would fire, in time order."""
    steps = []
    for route in result.matched:
        for lv in levels(router.config, route):
            at = first_notified + lv.after
            res = router.receivers(lv.to, result.check_id, result.severity, at,
                                   mode or result.mode, route=route,
                                   label=f"escalation level {lv.level} of routes[{route}]")
            steps.append(EscalationStep(lv, at, res))
    return sorted(steps, key=lambda s: (s.at, s.level.route, s.level.level))


def due(config: Config, route: int, first_notified: float, now: float,
        done: int = 0) -> list[EscalationLevel]:
    """Levels of `routes[route]` whose time has come by `now` and that are not among the
    first `done` already sent."""
    return [lv for lv in levels(config, route)
            if lv.level > done and first_notified + lv.after <= now]


def next_escalation(config: Config, route: int, first_notified: float,
                    now: float) -> tuple[EscalationLevel, float] | None:
    """The next level still to fire after `now`, and when."""
    for lv in levels(config, route):
        if first_notified + lv.after > now:
            return lv, first_notified + lv.after
    return None


def escalate(router: Router, check_id: str, severity: Severity | str, route: int, level: int,
             first_notified: float, mode: str | None = None) -> RoutingResult:
    """Who level `level` (1-based) of `routes[route]` tells, at the moment it fires."""
    lvls = levels(router.config, route)
    if not 1 <= level <= len(lvls):
        raise ValueError(f"routes[{route}] has {len(lvls)} escalation level(s), not {level}")
    lv = lvls[level - 1]
    return router.receivers(lv.to, check_id, severity, first_notified + lv.after, mode,
                            route=route, label=f"escalation level {level} of routes[{route}]")


def next_repeat(repeat: float | None, last_sent: float) -> float | None:
    """When to send again (None: the route does not repeat)."""
    if repeat is None or repeat <= 0:
        return None
    return last_sent + repeat


def repeat_due(repeat: float | None, last_sent: float, now: float) -> bool:
    t = next_repeat(repeat, last_sent)
    return t is not None and now >= t
