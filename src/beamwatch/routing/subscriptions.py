"""Per-person subscriptions: "tell me about these checks / groups at this severity or worse".

A subscription matches a check when the check's id is in `checks` or its group
is in `groups` (a subscription with neither follows every check), and the
alarm's severity is at least `severity`. It adds the person as a recipient even
when no route names them; the router marks such recipients `subscription`.
Route `modes:` do not apply: a subscription is the person's own choice.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..config.schema import Config, SubscriptionConfig
from ..model import Severity


@dataclass(frozen=True, slots=True)
class SubscriptionMatch:
    person: str
    index: int  # position in people.<person>.subscriptions
    why: str  # "follows group vacuum at minor and worse"


def matches(sub: SubscriptionConfig, check_id: str, group: str, severity: Severity) -> str | None:
    """Why `sub` matches, or None."""
    if severity == Severity.OK or severity < Severity.parse(sub.severity):
        return None
    floor = f"at {sub.severity} and worse"
    if not sub.checks and not sub.groups:
        return f"follows every check {floor}"
    if check_id in sub.checks:
        return f"follows check {check_id} {floor}"
    if group in sub.groups:
        return f"follows group {group} {floor}"
    return None


def subscribers(config: Config, check_id: str, group: str, severity: Severity,
                ) -> list[SubscriptionMatch]:
    """Everyone whose subscriptions match, in people order; one match per person."""
    out = []
    for pid, person in config.people.items():
        for i, sub in enumerate(person.subscriptions):
            why = matches(sub, check_id, group, severity)
            if why:
                out.append(SubscriptionMatch(pid, i, why))
                break
    return out
