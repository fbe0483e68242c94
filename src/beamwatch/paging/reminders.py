"""Silence reminders: tell a silence's author, before it ends, that it is about to.

One row per (silence, end): the dedup key makes each reminder go once, across
restarts; extending a silence gives a new end and so a new reminder.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from ..config.schema import Config
from ..model import Severity
from ..model.message import Message
from ..model.silence import SilenceReminder


def reminder_rows(reminders: Iterable[SilenceReminder], config: Config,
                  destinations: Callable[[str], list[str]], now: float) -> list[dict]:
    """Outbox rows for the reminders whose author is a configured person who can be
    reached (`destinations(person)`: their notifier names, in their order)."""
    rows = []
    for r in reminders:
        names = destinations(r.author) if r.author in config.people else []
        if not names:
            continue
        message = Message(kind="reminder", beamline=config.beamline,
                          title=f"silence {r.silence_id} ends soon", severity=Severity.OK,
                          text=r.text, time=now, timezone=config.timezone)
        rows.append({"dedup_key": r.key, "kind": "reminder",
                     "receiver": f"person:{r.author}", "destination": names[0],
                     "route": "author of the silence", "created_at": now,
                     "message": {**message.to_dict(), "fallbacks": names[1:]},
                     "expires_at": r.end})
    return rows
