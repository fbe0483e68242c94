"""The service layer: every question and command of every front end (CLI now;
web dashboard and Slack bot later) goes through these functions.

They read the store, never the running engine's memory, so they work from
another process while `beamwatch run` is writing; commands that change alarm
state are queued for the engine, which applies them in order.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from typing import Any

from ..config.schema import Config
from ..engine.alarm import FORECAST_PREFIX
from ..model import AlarmState, Severity, json_value, value_text
from ..store import LatestValue, Store
from . import audit

ENGINE_ALIVE_WITHIN = 15.0  # seconds since the last heartbeat


@dataclass(frozen=True)
class CheckStatus:
    id: str
    name: str
    group: str
    severity: str
    current: str
    acked: bool
    acked_by: str | None
    since: float | None
    value: Any
    value_text: str
    message: str
    connected: bool | None
    server: str | None
    updated: float | None
    muted: str | None = None  # why nobody is told about this alarm (MODE, DEPENDENCY…)
    mute_detail: str | None = None
    incident: str | None = None
    description: str = ""  # the check's description: and runbook: (what to do)
    runbook: str = ""
    forecast: bool = False  # the alarm is a forecast (checks/forecast.py), not yet crossed

    def to_json(self) -> dict:
        # every field is a plain value but `value`: a shallow copy, not asdict's deep one
        # (`status --json` of 100k checks: 3 s less)
        d = {name: getattr(self, name) for name in _STATUS_FIELDS}
        d["value"] = json_value(self.value)
        return d


_STATUS_FIELDS = tuple(f.name for f in fields(CheckStatus))


def status(config: Config, store: Store,
           live: Callable[[str], LatestValue | None] | None = None) -> list[CheckStatus]:
    """Every configured check, worst first, then by how long it has been so. `live`:
    the running engine's own latest values, fresher than the store's (engine.live_value)."""
    states = store.load_states()
    latest = store.latest()
    if live is not None:
        for cfg in config.checks:
            if (lv := live(cfg.id)) is not None:
                latest[cfg.id] = lv
    last = store.last_transitions()
    out = []
    for cfg in config.checks:
        st = states.get(cfg.id, AlarmState(cfg.id))
        lv = latest.get(cfg.id)
        tr = last.get(cfg.id) if st.severity > Severity.OK else None
        # latest values are flushed every 2 s, states with each transition: the newer wins,
        # so status never shows "63 above major limit 50" next to an old value of 3
        fresher_state = lv is None or (cfg.id in states and st.since > lv.time)
        value = st.value if fresher_state else lv.value
        out.append(CheckStatus(
            id=cfg.id, name=cfg.title, group=cfg.group, severity=st.severity.name,
            current=st.current.name, acked=st.acked, acked_by=st.acked_by,
            since=st.since if cfg.id in states else None, value=value,
            value_text=value_text(value) if lv or cfg.id in states else "—",
            message=st.message if st.severity > Severity.OK else (lv.message if lv else ""),
            connected=lv.connected if lv else None, server=lv.server if lv else None,
            updated=lv.time if lv else None,
            muted=tr.muted.value if tr and tr.muted else None,
            mute_detail=tr.mute_detail if tr else None,
            incident=tr.incident_id if tr else None,
            description=cfg.description or "", runbook=cfg.runbook or "",
            forecast=st.severity > Severity.OK and st.message.startswith(FORECAST_PREFIX),
        ))
    order = {s.name: int(s) for s in Severity}
    # worst first; within a severity, what people are told about before what is muted
    out.sort(key=lambda c: (-order[c.severity], c.muted is not None, c.acked, c.since or 0,
                            c.id))
    return out


def history(store: Store, since: float, check_id: str | None = None,
            limit: int | None = None, changes: bool = True) -> list[dict]:
    """The beamline log since `since`, oldest first: transitions ("kind": "transition")
    and, with `changes`, what people changed from a front end ("kind": "audit": acks,
    silences, mode overrides, subscriptions, on-call, refusals) — for one check, the
    changes that name it (an ack of it, a silence with check=it among its matchers).
    `limit`: the newest that many rows."""
    out = _transitions(store, since, check_id, None)
    if changes:
        entries = audit.entries(store, since)
        out += [{"kind": "audit", **e.to_json()} for e in entries
                if check_id is None or check_id in _named(e.target)]
        out.sort(key=lambda r: (r["time"], r["kind"] == "audit"))
    return out[-limit:] if limit is not None else out


def _named(target: str) -> set[str]:
    """The ids an audit target names: 'fe-vacuum', 'check=fe-vacuum, severity=minor',
    'check=~fe-vacuum|dcm-temp' (a silence of several checks)."""
    words = re.split(r"[\s,|=~!^$()]+", target.replace("\\", ""))  # unescaped ids
    return {w for w in words if w}


def _transitions(store: Store, since: float, check_id: str | None,
                 limit: int | None) -> list[dict]:
    rows = store.transitions(since=since, check_id=check_id, limit=limit)
    out = []
    for row in rows:
        tr = row.transition
        out.append({
            "kind": "transition", "id": row.id, "time": tr.time, "check": tr.check_id,
            "old": tr.old.name,
            "new": tr.new.name, "current": tr.current.name, "acked": tr.acked,
            "value": json_value(tr.value), "message": tr.message, "reason": tr.reason,
            "actor": tr.actor, "muted": tr.muted.value if tr.muted else None,
            "mute_detail": tr.mute_detail, "incident": tr.incident_id,
        })
    return out


def engine_alive(store: Store, now: float | None = None) -> bool:
    """Is an engine deciding and sending (a leader that beat recently)?"""
    beat = store.last_beat()
    now = time.time() if now is None else now
    return beat is not None and now - beat["beat"] < ENGINE_ALIVE_WITHIN


def instances(store: Store, now: float | None = None) -> list[dict]:
    """Each `beamwatch run` on this store, newest beat first: who leads, who stands by,
    who went quiet (an HA pair shows two)."""
    now = time.time() if now is None else now
    out = []
    for row in store.instances():
        alive = now - row["beat"] < ENGINE_ALIVE_WITHIN
        out.append({"instance": row["name"], "host": row["host"], "pid": row["pid"],
                    "role": (row["role"] or "leader") if alive else "gone",
                    "started": row["started"], "beat": row["beat"], "url": row["url"],
                    "config_file": row["config_file"]})
    return out


def instances_text(rows: list[dict], now: float | None = None) -> str:
    """One line for people: 'leader i04-ws1:812 (http://…), standby i04-ws2:77'."""
    from .. import timefmt

    now = time.time() if now is None else now
    parts = []
    for r in rows:
        where = f" ({r['url']})" if r["url"] else ""
        seen = f", last seen {timefmt.ago(r['beat'], now)}" if r["role"] == "gone" else ""
        parts.append(f"{r['role']} {r['host']}:{r['pid']}{where}{seen}")
    return ", ".join(parts) or "none"


@dataclass(frozen=True)
class CommandResult:
    ok: bool
    message: str
    queued: bool = False  # accepted, not applied yet
    engine_running: bool = True


ENGINE_NOT_RUNNING = ("no engine is running; the ack is queued and will be applied when "
                      "`beamwatch run` starts")
def acknowledge(config: Config, store: Store, check_id: str, who: str,
                wait: float = 10.0, now: float | None = None, via: str = "cli"
                ) -> CommandResult:
    """Acknowledge a check's alarm. The command is only ever queued: the engine applies
    it, so its memory, the stored state and the announcement agree. Nothing here writes
    alarm state, because an engine that is merely slow would overwrite it unannounced."""
    if not config.has_check(check_id):
        return CommandResult(False, f"unknown check '{check_id}'")
    now = time.time() if now is None else now
    result = _acknowledge(store, check_id, who, wait, now)
    outcome = "queued" if result.queued else ("done" if result.ok else "failed")
    audit.record(store, who, via, "ack", check_id, result.message, outcome=outcome, now=now)
    return result


def _acknowledge(store: Store, check_id: str, who: str, wait: float,
                 now: float) -> CommandResult:
    if not engine_alive(store, now):
        return _queue_for_later(store, check_id, who, now)
    cmd_id = store.queue_command("ack", {"check_id": check_id}, who, now)
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        cmd = store.command(cmd_id)
        if cmd and cmd.status != "queued":
            return CommandResult(cmd.status == "done", cmd.result or "")
        time.sleep(0.1)
    return CommandResult(True, f"queued: the engine has not applied it within {wait:g}s; it "
                               "will when it catches up", queued=True)


def _queue_for_later(store: Store, check_id: str, who: str, now: float) -> CommandResult:
    """No engine: say what the stored state already answers, else queue the ack once."""
    state = store.load_states().get(check_id)
    if state is None or state.severity == Severity.OK:
        return CommandResult(True, f"{check_id} has nothing to acknowledge",
                             engine_running=False)
    if state.acked:
        return CommandResult(True, f"{check_id} is already acknowledged by {state.acked_by}",
                             engine_running=False)
    if any(c.verb == "ack" and c.args.get("check_id") == check_id
           for c in store.queued_commands()):
        return CommandResult(True, f"{ENGINE_NOT_RUNNING} (an ack of {check_id} was already "
                                   "queued)", queued=True, engine_running=False)
    store.queue_command("ack", {"check_id": check_id}, who, now)
    return CommandResult(True, ENGINE_NOT_RUNNING, queued=True, engine_running=False)


def load_report(config: Config, store: Store, since: float, until: float | None = None):
    """The human-load report (ISA-18.2 / EEMUA 191 metrics) over the beamline log and
    the notifications that reached people in [since, until)."""
    from ..engine.report import Page
    from ..engine.report import load_report as compute
    from ..store.outbox import Outbox

    until = time.time() if until is None else until
    transitions = [r.transition for r in store.transitions(until=until)
                   if r.transition.time >= since - 86400]  # a day before: standing alarms
    pages = [Page(r["sent_at"] or r["created_at"], r["receiver"].removeprefix("person:"),
                  r["check_id"], r["incident_id"])
             for r in Outbox(store).rows(status="sent")
             if r["receiver"].startswith("person:")
             and r["kind"] in ("alarm", "repeat", "escalation")
             and since <= (r["sent_at"] or r["created_at"]) < until]
    return compute(transitions, pages, start=since, end=until)


@dataclass(frozen=True)
class IncidentView:
    """An open incident as front ends show it: its root cause, what it caused, who was
    told, and whether the root's alarm is acknowledged (and by whom)."""

    id: str
    title: str
    root: str
    severity: str
    opened: float
    consequences: tuple[str, ...]
    failing: tuple[str, ...]
    told: tuple[str, ...]  # receivers sent an alarm, repeat or escalation
    acked_by: str | None

    def to_json(self) -> dict:
        return asdict(self)


def incidents(store: Store) -> list[IncidentView]:
    """Open incidents, worst first, then oldest."""
    from ..store.noise import NoiseStore
    from ..store.outbox import Outbox

    states = store.load_states()
    outbox = Outbox(store)
    out = []
    for i in NoiseStore(store).open_incidents():
        root = states.get(i.root)
        told = tuple(dict.fromkeys(r for r, _, _ in outbox.told(i.id)))
        out.append(IncidentView(i.id, i.title, i.root, i.severity.name, i.opened,
                                i.consequences, i.failing, told,
                                root.acked_by if root is not None and root.acked else None))
    out.sort(key=lambda v: (-int(Severity[v.severity]), v.opened))
    return out


def ack_target(config: Config, store: Store, text: str) -> str:
    """The check an `ack` is for: a check id as is, an incident id -> its root check."""
    if config.has_check(text):
        return text
    for view in incidents(store):
        if view.id == text and config.has_check(view.root):
            return view.root
    return text  # unknown: acknowledge() says so


def timeline(config: Config, store: Store, since: float, until: float) -> dict:
    """The beamline log of [since, until) as bands, for the dashboard: per check its
    segments [start, end, severity, muted] (a check with no transition in the window
    holds its present state throughout), the mode changes, the silences and the
    notifications that went out. One read of each table."""
    from ..store.noise import NoiseStore
    from ..store.outbox import Outbox

    names = [s.name for s in sorted(Severity)]
    by_check: dict[str, list[tuple]] = {}
    for check_id, at, old, new, muted in store.changes(since, until):
        by_check.setdefault(check_id, []).append((at, old, new, muted))
    stored = store.severities()
    checks = []
    for cfg in config.checks:
        trs = by_check.get(cfg.id, [])
        level = names[trs[0][1]] if trs else names[stored.get(cfg.id, 0)]
        start, muted, segments = since, None, []
        for at, _old, new, now_muted in trs:
            if names[new] != level or now_muted != muted:
                if at > start:
                    segments.append([start, at, level, muted])
                start = at
            level, muted = names[new], now_muted
        segments.append([start, until, level, muted])
        checks.append({"id": cfg.id, "name": cfg.title, "group": cfg.group,
                       "segments": [s for s in segments if s[1] > s[0]]})
    noise = NoiseStore(store)
    modes = [{"time": m.time, "old": m.old, "new": m.new, "source": str(m.source),
              "author": m.author, "reason": m.reason}
             for m in noise.mode_changes(since=since) if m.time < until]
    silences = [{"id": s.id, "start": s.start, "end": s.end, "author": s.author,
                 "reason": s.reason, "matchers": [str(m) for m in s.matchers]}
                for s in noise.silences(since=since) if s.start < until]
    told = [{"time": r["sent_at"], "check": r["check_id"], "kind": r["kind"],
             "receiver": r["receiver"]} for r in Outbox(store).sent_between(since, until)]
    return {"since": since, "until": until, "checks": checks, "modes": modes,
            "silences": silences, "notifications": told}
