"""The morning digest (`digest:`): once a day at `at`, what happened in the last
`window` for whoever was not watching — each incident with who was paged and
whether and by whom it was acknowledged, and what is still wrong now — as one
`summary` message to each receiver of `to` (a channel, or a person on their
first channel with the rest as fall-backs).

The rows' dedup keys carry the day, so a restart or a second instance on the
same store never sends one day's digest twice; a digest more than `LATE` after
its time (beamwatch was down at 08:00) is not sent at all — by then it is news
nobody needs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from .. import timefmt
from ..config.schema import Config
from ..model import Severity
from ..model.message import Message, Related
from ..store import Store
from ..store.noise import NoiseStore
from ..store.outbox import Outbox

LATE = 3600.0  # seconds after `at` a digest is still worth sending
MAX_INCIDENTS = 30


@dataclass(frozen=True)
class Due:
    day: str  # YYYY-MM-DD in the config's timezone
    at: float  # the scheduled time


def due(config: Config, now: float) -> Due | None:
    """Today's digest if its time has come within the last LATE seconds."""
    if config.digest is None:
        return None
    tz = timefmt.zone(config.timezone)
    local = datetime.fromtimestamp(now, tz)
    hh, mm = (int(x) for x in config.digest.at.split(":"))
    for day in (local.date(), local.date() - timedelta(days=1)):
        at = timefmt.local_to_epoch(datetime(day.year, day.month, day.day, hh, mm), tz)
        if at <= now < at + LATE:
            return Due(day.isoformat(), at)
    return None


def gather(config: Config, store: Store, since: float, until: float) -> tuple[str, list]:
    """(the text: one paragraph per incident, the still-wrong alarms as Related)."""
    outbox = Outbox(store)
    acks: dict[str, list[str]] = {}
    for row in store.transitions(since=since, until=until):
        tr = row.transition
        if tr.reason == "ack" and tr.actor:
            acks.setdefault(tr.check_id, []).append(f"{tr.actor} at "
                                                     f"{_hhmm(tr.time, config.timezone)}")
    lines = []
    incidents = NoiseStore(store).incidents(since, until)
    for inc in incidents[-MAX_INCIDENTS:]:
        told = sorted({r for r, _, _ in outbox.told(inc.id)})
        state = (f"resolved {_hhmm(inc.resolved, config.timezone)}" if inc.resolved
                 else "STILL OPEN")
        acked = acks.get(inc.root)
        lines.append(
            f"• {inc.severity.name} {inc.title} ({_hhmm(inc.opened, config.timezone)}, "
            f"{state}; {len(inc.consequences)} consequences): "
            f"paged {', '.join(told) if told else 'nobody'}; "
            + (f"acked by {', '.join(acked)}" if acked else "not acknowledged"))
    if len(incidents) > MAX_INCIDENTS:
        lines.insert(0, f"({len(incidents) - MAX_INCIDENTS} earlier incidents not listed)")
    states = store.load_states()
    wrong = [Related(c.id, c.title, states[c.id].severity, "")
             for c in config.checks
             if c.id in states and states[c.id].severity > Severity.OK]
    text = "\n".join(lines) if lines else "No incidents."
    return text, wrong


def rows(config: Config, store: Store, when: Due, now: float,
         destinations: Callable[[str], list[str]]) -> list[dict]:
    """The digest's outbox rows for today's `when` (none without receivers)."""
    assert config.digest is not None
    since = when.at - config.digest.window
    text, wrong = gather(config, store, since, when.at)
    count = text.count("• ")
    title = (f"{config.beamline} digest: {count} incident{'s' if count != 1 else ''} since "
             f"{_hhmm(since, config.timezone)}, {len(wrong)} still in alarm")
    link = (f"{config.web.url.rstrip('/')}/log?hours={round(config.digest.window / 3600)}"
            if config.web.url else None)
    message = Message(kind="summary", beamline=config.beamline, title=title,
                      severity=max((a.severity for a in wrong), default=Severity.OK),
                      text=text, time=now, alarms=tuple(wrong), link=link,
                      labels={"digest": when.day}, timezone=config.timezone)
    out = []
    for receiver in config.digest.to:
        kind, _, name = receiver.partition(":")
        names = [f"channel:{name}"] if kind == "channel" else destinations(name)
        if not names:
            continue
        out.append({"dedup_key": f"digest/{when.day}/{receiver}", "kind": "summary",
                    "receiver": receiver, "destination": names[0], "route": "digest",
                    "created_at": now, "expires_at": when.at + LATE * 4,
                    "message": {**message.to_dict(), "fallbacks": names[1:]}})
    return out


def _hhmm(t: float, tz: str) -> str:
    return datetime.fromtimestamp(t, timefmt.zone(tz)).strftime("%a %H:%M")
