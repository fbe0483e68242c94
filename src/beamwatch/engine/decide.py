"""From transitions to outbox rows: mute stages, then routing, then the schedule
of repeats and escalations. Pure and fast: it runs on the engine's loop before
the transitions are stored, so a transition and the notifications it causes
are committed together.

Which transitions notify:
- a raise (OK→alarm, or to a worse severity) that no mute stage holds:
  one `alarm` row per recipient, then `repeat` and `escalation` rows scheduled
  for later (the worker cancels them if the alarm is acknowledged or clear);
- an alarm muted at first and unmuted later (a silence ends while the fault
  persists): the engine re-offers it (`review`), notified then, once;
- an acknowledgement or a clear of an alarm people were told about: one
  fan-out row that the worker expands to exactly those told (`told:`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from ..config.schema import Config
from ..model import Severity, Transition, json_value, value_text
from ..routing.escalation import plan
from ..routing.router import Router
from .mute import Alert, MutePipeline

TOLD = "told:"  # receiver of a fan-out row: "whoever was told about this episode"


@dataclass
class Episode:
    """One alarm of one check, from leaving OK to coming back to OK."""

    id: str
    start: float
    notified: bool = False
    worst_notified: Severity = Severity.OK


class Decider:
    def __init__(self, config: Config, router: Router | None = None,
                 mutes: MutePipeline | None = None,
                 mode: Callable[[float], str] | None = None):
        self.config = config
        self.router = router or Router(config)
        self.mutes = mutes or MutePipeline([])
        self.mode = mode or (lambda now: config.modes.default)
        self.checks = {c.id: c for c in config.checks}
        self.episodes: dict[str, Episode] = {}

    def restore(self, check_id: str, start: float, notified: bool, severity: Severity) -> None:
        """After a restart: an alarm already active (from the store) keeps its episode."""
        self.episodes[check_id] = Episode(_episode_id(check_id, start), start, notified,
                                          severity if notified else Severity.OK)

    # -- the Decider protocol ---------------------------------------------------------------

    def decide(self, transitions: list[Transition], now: float) -> tuple[list[Transition],
                                                                          list[dict]]:
        out_tr: list[Transition] = []
        rows: list[dict] = []
        for index, tr in enumerate(transitions):
            tr, new_rows = self._one(tr, now)
            out_tr.append(tr)
            for row in new_rows:
                row["transition_index"] = index
            rows.extend(new_rows)
        return out_tr, rows

    def _one(self, tr: Transition, now: float) -> tuple[Transition, list[dict]]:
        ep = self.episodes.get(tr.check_id)
        if tr.old == Severity.OK and tr.new > Severity.OK or ep is None and tr.new > Severity.OK:
            ep = self.episodes[tr.check_id] = Episode(_episode_id(tr.check_id, tr.time), tr.time)
        if ep is None:
            return tr, []
        tr = replace(tr, incident_id=ep.id)
        if tr.new == Severity.OK:
            self.episodes.pop(tr.check_id, None)
        if tr.reason == "ack":  # told people learn who took it (a latched alarm may end too)
            return tr, [self._fan_out("ack", tr, ep, now)] if ep.notified else []
        if tr.new == Severity.OK:
            if tr.old > Severity.OK and ep.notified:
                return tr, [self._fan_out("resolve", tr, ep, now)]
            return tr, []
        if tr.new <= ep.worst_notified:
            return tr, []  # better, or as bad as already told: nothing new to say
        mute = self.mutes.decide(self._alert(tr, now), now)
        if mute is not None:
            return replace(tr, muted=mute.reason, mute_detail=mute.detail), []
        rows = self._alarm_rows(tr, ep, now)
        ep.notified = True
        ep.worst_notified = tr.new
        return tr, rows

    def review(self, states: dict[str, Any], now: float) -> list[Transition]:
        """Active alarms nobody was told about: if no stage mutes them any more,
        return an `unmuted` transition for each, which `decide` then notifies."""
        out = []
        for check_id, ep in self.episodes.items():
            state = states.get(check_id)
            if ep.notified or state is None or state.severity == Severity.OK or state.acked:
                continue
            tr = Transition(check_id, now, state.severity, state.severity, state.current,
                            state.acked, state.value, state.message, "unmuted")
            if self.mutes.decide(self._alert(tr, now), now) is None:
                out.append(tr)
        return out

    # -- rows ---------------------------------------------------------------------------------

    def _alert(self, tr: Transition, now: float) -> Alert:
        cfg = self.checks[tr.check_id]
        return Alert(tr.check_id, cfg.group, cfg.labels, tr.new, tr.time, self.mode(now))

    def _message(self, tr: Transition, ep: Episode, kind: str, now: float) -> dict:
        cfg = self.checks.get(tr.check_id)
        return {
            "kind": kind, "beamline": self.config.beamline, "check_id": tr.check_id,
            "title": cfg.title if cfg else tr.check_id, "group": cfg.group if cfg else None,
            "severity": tr.new.name, "previous": tr.old.name, "value": json_value(tr.value),
            "value_text": value_text(tr.value), "text": tr.message, "time": tr.time,
            "since": ep.start, "incident_id": ep.id, "mode": self.mode(now),
            "actor": tr.actor, "decided_at": now,
        }

    def _alarm_rows(self, tr: Transition, ep: Episode, now: float) -> list[dict]:
        mode = self.mode(now)
        result = self.router.route(tr.check_id, tr.new, now, mode)
        message = self._message(tr, ep, "alarm", now)
        rows = []
        for rcpt in result.recipients:
            route = self.config.routes[rcpt.route] if rcpt.route is not None else None
            wait = route.group_wait if route else 0.0
            names = rcpt.notifier_names
            if not names:
                continue
            dest = names[0]
            key = f"t{{transition_id}}/{dest}"
            base = {"check_id": tr.check_id, "incident_id": ep.id, "receiver": rcpt.key,
                    "destination": dest, "route": _route_label(rcpt),
                    "created_at": now, "message": message}
            rows.append({**base, "dedup_key": key + "/alarm", "kind": "alarm",
                         "next_attempt_at": now + wait,
                         "expires_at": now + wait + self._expire(dest)})
            if rcpt.repeat:
                rows.append({**base, "dedup_key": key + "/repeat1", "kind": "repeat",
                             "next_attempt_at": now + rcpt.repeat,
                             "message": {**message, "kind": "repeat", "repeat": 1,
                                         "repeat_every": rcpt.repeat}})
        rows += self._escalation_rows(tr, ep, result, message, now, mode)
        return rows

    def _escalation_rows(self, tr, ep, result, message, now, mode) -> list[dict]:
        """Each level of each matched route, expanded now for the time it will fire (the
        on-call person of that moment); the worker cancels them on ack or clear."""
        rows = []
        for step in plan(self.router, result, now, mode):
            lv = step.level
            label = f"escalation level {lv.level} of routes[{lv.route}]"
            for rcpt in step.result.recipients:
                if not rcpt.notifier_names:
                    continue
                dest = rcpt.notifier_names[0]
                rows.append({
                    "check_id": tr.check_id, "incident_id": ep.id, "receiver": rcpt.key,
                    "destination": dest, "route": label, "created_at": now,
                    "dedup_key": f"t{{transition_id}}/{dest}/r{lv.route}e{lv.level}",
                    "kind": "escalation", "next_attempt_at": step.at,
                    "message": {**message, "kind": "escalation", "level": lv.level,
                                "after": lv.after},
                })
        return rows

    def _fan_out(self, kind: str, tr: Transition, ep: Episode, now: float) -> dict:
        return {"check_id": tr.check_id, "incident_id": ep.id, "receiver": TOLD + ep.id,
                "destination": "*", "route": None, "created_at": now, "kind": kind,
                "dedup_key": f"t{{transition_id}}/{kind}",
                "message": self._message(tr, ep, kind, now)}

    def _expire(self, dest: str) -> float:
        name = dest.split(":", 1)[1] if dest.startswith("channel:") else None
        channel = self.config.channels.get(name) if name else None
        return channel.expire if channel else 3600.0


def _episode_id(check_id: str, start: float) -> str:
    return f"{check_id}@{int(start)}"


def _route_label(rcpt) -> str:
    return "; ".join(rcpt.via)[:200]
