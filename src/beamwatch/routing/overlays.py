"""The config in force: the YAML file with the runtime overlays (store/overlays.py)
applied over it — people's subscriptions and quiet hours, on-call takeovers.

Used by the running engine (routing, on-call) and by every front end that
answers "who is told" or "who is on call", so they all agree. An overlay that
no longer fits the file (a person or team removed, a check renamed) is skipped
and reported, never an error that stops the engine."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from pydantic import ValidationError

from ..config.schema import Config, OverrideConfig, QuietHours, SubscriptionConfig
from ..store.overlays import Overlay


def apply(config: Config, overlays: Iterable[Overlay], now: float) -> tuple[Config, list[str]]:
    """(the config in force, why some overlays were skipped)."""
    people = dict(config.people)
    teams = dict(config.teams)
    skipped: list[str] = []
    for o in overlays:
        try:
            why = _apply_one(o, people, teams, config, now)
        except (ValidationError, KeyError, TypeError, ValueError) as e:
            why = f"unreadable value ({type(e).__name__})"
        if why:
            skipped.append(f"overlay {o.id} ({o.kind} of {o.target}, by {o.actor}): {why}")
    if people == config.people and teams == config.teams:
        return config, skipped
    return config.model_copy(update={"people": people, "teams": teams}), skipped


def _apply_one(o: Overlay, people: dict, teams: dict, config: Config, now: float) -> str | None:
    if o.kind in ("subscriptions", "quiet_hours"):
        person = people.get(o.target)
        if person is None:
            return f"no person '{o.target}' in the file any more"
        if o.kind == "subscriptions":
            subs = [SubscriptionConfig(**s) for s in o.value]
            people[o.target] = person.model_copy(update={"subscriptions": subs})
        else:
            quiet = None if o.value is None else QuietHours(**o.value)
            people[o.target] = person.model_copy(update={"quiet_hours": quiet})
        return None
    if o.kind == "oncall":
        team = teams.get(o.target)
        if team is None:
            return f"no team '{o.target}' in the file any more"
        if o.value["end"] <= now:
            return None  # ran out: nothing to say
        if o.value["person"] not in team.members:
            return f"{o.value['person']} is no longer a member of team {o.target}"
        takeover = OverrideConfig(person=o.value["person"], start=_utc(o.value["start"]),
                                  end=_utc(o.value["end"]))
        teams[o.target] = team.model_copy(update={"overrides": [*team.overrides, takeover]})
        return None
    return f"unknown kind '{o.kind}'"


def _utc(t: float) -> datetime:
    return datetime.fromtimestamp(float(t), UTC)
