"""Commands from the front ends (CLI, Slack, web) to the running engine: one table.

A front end queues a command in the store (`Store.queue_command`: verb, args,
actor); the running engine applies it and stores the outcome. Nothing but the
engine changes alarm state, so a slow engine is never overtaken. A command
too old when the engine gets to it (queued while no engine ran) is dropped
with its reason, not applied to a beamline that has moved on.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from .. import timefmt
from ..store import Command

if TYPE_CHECKING:
    from .engine import Engine

Outcome = tuple[str, str]  # (status: done | failed | expired, what people are told)
Handler = Callable[["Engine", Command], Outcome]

EXPIRES = {"ack": 24 * 3600.0}  # verb -> seconds a queued command stays worth applying


def _ack(engine: Engine, cmd: Command) -> Outcome:
    check_id = cmd.args.get("check_id", "")
    try:
        done = engine.acknowledge(check_id, cmd.actor)
    except KeyError:
        return "failed", f"unknown check '{check_id}'"
    return "done", (f"acknowledged {check_id}" if done else
                    f"{check_id} has nothing to acknowledge")


HANDLERS: dict[str, Handler] = {"ack": _ack}


def expired(cmd: Command, now: float) -> str | None:
    """Why a queued command is too old to apply, or None to apply it."""
    limit = EXPIRES.get(cmd.verb)
    if limit is None or now - cmd.time <= limit:
        return None
    return (f"dropped: {cmd.verb} queued by {cmd.actor} {timefmt.ago(cmd.time, now)} ago, "
            f"more than {limit / 3600:g}h before the engine could apply it")


def apply(engine: Engine, cmd: Command, now: float) -> Outcome:
    if why := expired(cmd, now):
        return "expired", why
    handler = HANDLERS.get(cmd.verb)
    if handler is None:
        return "failed", f"unknown command '{cmd.verb}'"
    return handler(engine, cmd)
