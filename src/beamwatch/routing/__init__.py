"""Routing: who is told about an alarm, on what, and why; who is on call.

Pure logic: the time is always an argument, calendars are passed in parsed
(`calendars.load_calendars` is the only function that reads anything).

    router = Router(config, OnCallResolver(config, *load_calendars(config, base)))
    result = router.route("dcm-temp", Severity.MAJOR, at=time.time(), mode="unattended")
    for r in result.recipients:       # Recipient(name, kind, destinations, via, routes, ...)
        ...
    print(result.explanation)         # which rule decided, and why the others did not
"""

from .calendars import load_calendars, parse_calendar
from .escalation import (
    EscalationLevel,
    EscalationStep,
    due,
    escalate,
    levels,
    next_escalation,
    next_repeat,
    plan,
    repeat_due,
)
from .oncall import OnCall, OnCallResolver, Rota, Shift
from .people import DEFAULT_ORDER, Reach, destinations, in_quiet_hours, reach
from .router import Held, Recipient, Router, RouteStep, RoutingResult, UnknownCheck
from .subscriptions import SubscriptionMatch, subscribers

__all__ = [
    "DEFAULT_ORDER", "EscalationLevel", "EscalationStep", "Held", "OnCall", "OnCallResolver",
    "Reach", "Recipient", "Rota", "RouteStep", "Router", "RoutingResult", "Shift",
    "SubscriptionMatch", "UnknownCheck", "destinations", "due", "escalate", "in_quiet_hours",
    "levels", "load_calendars", "next_escalation", "next_repeat", "parse_calendar", "plan",
    "reach", "repeat_due", "subscribers",
]
