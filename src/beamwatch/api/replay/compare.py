"""Replay, part three: would-notify (the replayed config) versus was-notified (the log).

Counted on both sides: `alarm`, `repeat`, `escalation`, `resolve` and `ack`
notifications sent (or due: pending, failed) in [since, until]; a repeat or
escalation still pending is not counted (the worker decides when it is due
whether it goes), nor are the per-receiver rows a fan-out expands into. They are
matched by (root check, receiver, kind) and time within `tolerance` seconds;
incident ids differ between the runs. The report renders as JSON here; the
command line prints it as a table.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import and_, func, or_, select

from ...store import Store
from ...store import tables as t

KINDS = ("alarm", "repeat", "escalation", "resolve", "ack")
COUNTED = ("sent", "pending", "failed")  # a decided notification; not cancelled/folded/expanded
FOLLOW_UPS = ("repeat", "escalation")
BOTH, ONLY_NEW, ONLY_OLD = "both", "only new", "only old"

APPROXIMATIONS = [
    "values come from the per-minute history (min, max, last): within a minute the order "
    "and the timing are guessed (smoothest path, extremes brief, pinned where a logged "
    "evaluation says when), so a `for:` shorter than a minute, two spikes in one minute "
    "and a MINOR turning MAJOR within a minute are approximate",
    "disconnections come from the per-minute history (connected at the end of the minute, "
    "first lost and last back in it): several in one minute replay as one; the IOC is the "
    "PV's last known server",
    "the record's EPICS severity comes from the per-minute history (the worst, when it was "
    "reached, the last): a record alarm shorter than a minute between two others is lost",
    "the mode is what the log says it was (logged mode changes, as overrides); a changed "
    "mode schedule or mode PV mapping in the new config has no effect",
    "acknowledgements are replayed at their logged time; an alarm the new config raises "
    "later than the logged ack stays unacknowledged",
    "notifications match by root check, receiver and kind within the tolerance; incident "
    "ids differ between the runs",
    "delivery always succeeds in the replay: no retries, fallbacks or folded summaries",
]


@dataclass(frozen=True)
class Notice:
    """One notification, from either run."""

    time: float  # when it was (or is due to be) sent
    created: float
    check_id: str  # the root check of its incident
    incident_id: str | None
    receiver: str
    destination: str
    kind: str
    status: str
    severity: str | None = None


@dataclass(frozen=True)
class ReplayRow:
    time: float
    check_id: str
    receiver: str
    kind: str
    verdict: str  # BOTH, ONLY_NEW or ONLY_OLD
    new: Notice | None = None
    old: Notice | None = None

    def to_json(self) -> dict[str, Any]:
        return {"time": self.time, "check_id": self.check_id, "receiver": self.receiver,
                "kind": self.kind, "verdict": self.verdict,
                "new": asdict(self.new) if self.new else None,
                "old": asdict(self.old) if self.old else None}


@dataclass
class ReplayReport:
    beamline: str
    since: float
    until: float
    warmup_from: float
    rows: list[ReplayRow] = field(default_factory=list)
    checks: int = 0
    replayed: list[str] = field(default_factory=list)  # checks with history
    no_data: list[str] = field(default_factory=list)  # checks of the config with none
    not_in_config: list[str] = field(default_factory=list)  # in the log, not in the config
    samples: int = 0
    ticks: int = 0
    history_rows: int = 0  # minutes of history in [since, until], all checks
    transitions_old: int = 0  # non-ack transitions in [since, until]
    transitions_new: int = 0
    notes: list[str] = field(default_factory=list)
    approximations: list[str] = field(default_factory=lambda: list(APPROXIMATIONS))
    elapsed: float = 0.0

    @property
    def totals(self) -> dict[str, int]:
        out = {BOTH: 0, ONLY_NEW: 0, ONLY_OLD: 0}
        for r in self.rows:
            out[r.verdict] += 1
        return out

    @property
    def would_notify(self) -> int:
        return sum(r.verdict != ONLY_OLD for r in self.rows)

    @property
    def was_notified(self) -> int:
        return sum(r.verdict != ONLY_NEW for r in self.rows)

    @property
    def empty(self) -> bool:
        """Nothing to replay: no value history and no transitions in the period."""
        return not self.history_rows and not self.transitions_old

    def to_dict(self) -> dict[str, Any]:
        totals = self.totals
        return {
            "beamline": self.beamline, "since": self.since, "until": self.until,
            "warmup_from": self.warmup_from, "empty": self.empty,
            "totals": {"both": totals[BOTH], "only_new": totals[ONLY_NEW],
                       "only_old": totals[ONLY_OLD], "would_notify": self.would_notify,
                       "was_notified": self.was_notified},
            "transitions": {"old": self.transitions_old, "new": self.transitions_new},
            "checks": self.checks, "replayed": self.replayed, "no_data": self.no_data,
            "not_in_config": self.not_in_config, "history_rows": self.history_rows,
            "samples": self.samples, "ticks": self.ticks,
            "elapsed": round(self.elapsed, 3), "notes": self.notes,
            "approximations": self.approximations,
            "rows": [r.to_json() for r in self.rows],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


def compare(new: list[Notice], old: list[Notice], tolerance: float) -> list[ReplayRow]:
    """Pair notifications of the two runs: same (root check, receiver, kind), times
    within `tolerance`, in time order; the rest are only in one of them."""
    groups: dict[tuple[str, str, str], tuple[list[Notice], list[Notice]]] = {}
    for n in new:
        groups.setdefault((n.check_id, n.receiver, n.kind), ([], []))[0].append(n)
    for o in old:
        groups.setdefault((o.check_id, o.receiver, o.kind), ([], []))[1].append(o)
    rows: list[ReplayRow] = []
    for (check_id, receiver, kind), (ns, os_) in groups.items():
        ns.sort(key=lambda x: x.time)
        os_.sort(key=lambda x: x.time)
        i = j = 0
        while i < len(ns) or j < len(os_):
            n = ns[i] if i < len(ns) else None
            o = os_[j] if j < len(os_) else None
            if n is not None and o is not None and abs(n.time - o.time) <= tolerance:
                rows.append(ReplayRow(o.time, check_id, receiver, kind, BOTH, n, o))
                i, j = i + 1, j + 1
            elif o is None or (n is not None and n.time < o.time):
                rows.append(ReplayRow(n.time, check_id, receiver, kind, ONLY_NEW, new=n))
                i += 1
            else:
                rows.append(ReplayRow(o.time, check_id, receiver, kind, ONLY_OLD, old=o))
                j += 1
    rows.sort(key=lambda r: (r.time, r.check_id, r.receiver, r.kind))
    return rows


def decided(rows: list[dict], since: float, until: float) -> list[Notice]:
    """Notifications sent (or due) in [since, until], from outbox rows of either run."""
    out = []
    for r in rows:
        if r["kind"] not in KINDS or r["status"] not in COUNTED:
            continue
        if r["status"] == "pending" and r["kind"] in FOLLOW_UPS:
            continue
        if r["receiver"].startswith("told:"):
            continue
        when = r.get("sent_at") or r.get("next_attempt_at") or r["created_at"]
        if not since <= when <= until:
            continue
        message = r.get("message") or {}
        out.append(Notice(when, r["created_at"], r.get("check_id") or "", r.get("incident_id"),
                          r["receiver"], r["destination"], r["kind"], r["status"],
                          message.get("severity") if isinstance(message, dict) else None))
    return out


def was_notified(store: Store, since: float, until: float) -> list[Notice]:
    """What the live log notified (or was due to) in [since, until]."""
    n = t.notifications.c
    when = or_(n.sent_at >= since, and_(n.sent_at.is_(None), n.next_attempt_at >= since))
    q = (select(t.notifications)
         .where(n.created_at <= until, when, n.kind.in_(KINDS), n.status.in_(COUNTED))
         .order_by(n.id))
    with store.engine.connect() as conn:
        rows = [dict(r) for r in conn.execute(q).mappings().all()]
    return decided(rows, since, until)


def delivery_notes(store: Store, since: float, until: float) -> list[str]:
    """What the comparison cannot see: live notifications lost to delivery trouble."""
    n = t.notifications.c
    q = (select(func.count()).select_from(t.notifications)
         .where(n.created_at >= since, n.created_at <= until,
                n.status.in_(("folded", "expired"))))
    with store.engine.connect() as conn:
        folded = conn.execute(q).scalar_one()
    if not folded:
        return []
    return [f"{folded} live notification(s) were folded or expired (delivery trouble); "
            "the replay does not model delivery"]
