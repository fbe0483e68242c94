"""From transitions to outbox rows: one fault, one incident, one page.

Runs on the engine's loop before the transitions are stored (pure, no I/O),
so a transition and the notifications it causes commit together.

- Every transition feeds the incident tracker (with the check's *current*
  severity) and the flap detector, and is annotated with its incident and,
  if no page follows from it, the mute stage that held it back.
- Pages come from incident events: an incident opened, a consequence
  promoted to a root of its own, an incident getting worse. A page goes
  through the mute stages for its root (mode, maintenance, silence,
  flapping); a muted page is remembered and offered again every tick, so a
  silence that ends while the fault persists notifies then, once.
- A page is routed (people, teams, on-call, channels) into `alarm` rows, with
  `repeat` and `escalation` rows scheduled after it; the outbox worker
  cancels those once the root is acknowledged or clear.
- Acknowledging or resolving an incident people were told about gives one
  fan-out row that the worker expands to exactly those told.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace

from ..config.schema import Config
from ..engine.incidents import (
    ConsequenceAttached,
    ConsequencePromoted,
    Incident,
    IncidentEscalated,
    IncidentKind,
    IncidentOpened,
    IncidentResolved,
)
from ..engine.mute import Alert
from ..engine.noise import Noise
from ..model import AlarmState, MuteReason, Sample, Severity, Transition, value_text
from ..model.decision import Decision
from ..model.message import HELD, TOLD, Message, Related
from ..model.modes import Override
from ..routing._time import show
from ..routing.escalation import plan
from ..routing.router import Held, Router
from .mode_notes import ModeNotes

log = logging.getLogger("beamwatch.decide")



class Decider:
    def __init__(self, config: Config, router: Router | None = None,
                 noise: Noise | None = None,
                 sample_of: Callable[[str], Sample | None] | None = None,
                 state_of: Callable[[str], AlarmState | None] | None = None):
        self.config = config
        self.router = router or Router(config)
        self.noise = noise or Noise.from_config(config)
        self.sample_of = sample_of or (lambda cid: None)
        self.state_of = state_of or (lambda cid: None)
        self._previous: dict[str, Severity] = {}
        # gathered during one call, returned in its Decision
        self._changed: dict[str, Incident] = {}
        self._fates: list[tuple[Transition, AlarmState]] = []
        self.notes = ModeNotes()  # mode changes, announced (routes with kind: mode)
        self.checks = {c.id: c for c in config.checks}
        self.paged: dict[str, Severity] = {}  # incident id -> worst severity paged
        self.unpaged: dict[str, Incident] = {}  # open incidents whose page a stage held
        self.last_incident: dict[str, str] = {}  # check id -> its latest incident id

    # -- the engine's Decider protocol ------------------------------------------------------

    def decide(self, transitions: list[Transition], now: float) -> Decision:
        out_tr, rows = [], []
        for index, tr in enumerate(transitions):
            tr, new_rows = self._one(tr, now)
            out_tr.append(tr)
            for row in new_rows:
                row.setdefault("transition_index", index)
            rows.extend(new_rows)
        return self._decision(rows, transitions=out_tr)

    def mode(self, now: float) -> str:
        return self.noise.modes.mode(now)

    def on_mode_sample(self, sample: Sample, now: float) -> Decision:
        records = self.noise.modes.on_pv(sample.value, now, sample.connected)
        return self._mode_records(records, now)

    def sync_mode(self, override: Override | None, now: float) -> Decision:
        """The override as the store has it now (any front end sets it), and the mode
        schedule and override expiry: what changed, logged and announced."""
        records = self._apply_override(override, now) + self.noise.modes.tick(now)
        return self._mode_records(records, now)

    def take_over(self, previous: Decider) -> Decider:
        """On a reload: carry on from the running decider — who was paged, which pages a
        stage holds, each check's latest incident, the mode last announced. (The mute
        stages' own state carries over in Noise.from_config.)"""
        self.paged, self.unpaged = previous.paged, previous.unpaged
        self.last_incident, self._previous = previous.last_incident, previous._previous
        self.notes.last = previous.notes.last
        return self

    def _decision(self, rows: list[dict], transitions: list[Transition] | None = None,
                  mode_changes: list | None = None) -> Decision:
        """Everything this call decided, with the incidents it changed and the fates it
        logged; nothing is kept back for a later call."""
        incidents, self._changed = list(self._changed.values()), {}
        fates, self._fates = self._fates, []
        return Decision(transitions or [], rows, fates, incidents, mode_changes or [])

    def _mode_records(self, records: list, now: float) -> Decision:
        for record in records:
            log.warning("beamline mode: %s", record)
        rows = self.notes.rows(records, self.router, self.config, self.noise.modes, now) \
            if records else []
        return self._decision(rows, mode_changes=records)

    def _apply_override(self, override: Override | None, now: float) -> list:
        modes = self.noise.modes
        current = modes.override
        if override is None:
            if current is not None and current.until > now:
                return modes.clear_override(author=current.author, now=now,
                                            reason="override cleared")
            return []
        same = current is not None and (current.mode, current.author, current.reason,
                                        current.until) == (override.mode, override.author,
                                                           override.reason, override.until)
        if same:
            return []
        return modes.set_override(override.mode, author=override.author,
                                  reason=override.reason, now=now, until=override.until)

    def restore(self, incidents: list[Incident], paged: set[str], now: float,
                last_incident: dict[str, str] | None = None) -> Decision:
        """Start-up: open incidents from the store, checks failing now (from the engine's
        restored states), and which incidents were already paged — a restart pages
        nobody twice, and an incident that ended while we were down is resolved."""
        from ..engine.incidents import FailingCheck

        failing = {}
        for cid in self.checks:
            state = self.state_of(cid)
            if state is not None and state.current > Severity.OK:
                failing[cid] = FailingCheck(state.current, state.since)
        self.last_incident.update(last_incident or {})
        for inc_id in paged:  # resolved ones too: an ack is still announced to those told
            self.paged.setdefault(inc_id, Severity.MAJOR)
        for inc in incidents:
            if inc.id in paged:
                self.paged[inc.id] = inc.severity
            for cid in (inc.root, *inc.consequences):
                self.last_incident[cid] = inc.id
        events = self.noise.incidents.restore(incidents, failing, now)
        return self._decision(self._on_events(events, now))

    def tick(self, now: float) -> Decision:
        """Time passed: held failures settle, flapping ends, muted pages are re-offered."""
        rows: list[dict] = []
        rows += self._on_events(self.noise.incidents.tick(now), now)
        for event in self.noise.flaps.tick(now):
            if event.stopped:  # settled but still failing: its page is due now
                self._offer(event.check_id)
        for inc_id in list(self.unpaged):
            live = self._live(inc_id)
            if live is None:
                del self.unpaged[inc_id]
                continue
            rows += self._page(live, "alarm", now)
        return self._decision(rows)

    # -- one transition ---------------------------------------------------------------------

    def _one(self, tr: Transition, now: float) -> tuple[Transition, list[dict]]:
        if tr.reason == "ack":
            inc_id = self.last_incident.get(tr.check_id)
            tr = replace(tr, incident_id=inc_id)
            if inc_id is not None and inc_id in self.paged:
                return tr, [self._fan_out("ack", inc_id, tr, now)]
            return tr, []
        self.noise.flaps.record(tr.check_id, tr.current, now)
        sample = self.sample_of(tr.check_id)
        disconnected_at = None
        if sample is not None and not sample.connected:
            disconnected_at = sample.received
        events = self.noise.incidents.update(
            tr.check_id, tr.current, now, server=sample.server if sample else None,
            disconnected_at=disconnected_at)
        inc = self.noise.incidents.incident_of(tr.check_id)
        if inc is not None:
            self.last_incident[tr.check_id] = inc.id
            tr = replace(tr, incident_id=inc.id)
        elif tr.check_id in self.last_incident:
            tr = replace(tr, incident_id=self.last_incident[tr.check_id])
        rows = self._on_events(events, now, tr)
        if tr.new > Severity.OK and not any(r["kind"] == "alarm" for r in rows):
            mute = self.noise.pipeline.decide(self._alert(tr.check_id, tr.new, tr.time, now), now)
            if mute is not None and self.noise.incidents.is_held(tr.check_id):
                tr = replace(tr, mute_detail=mute.detail)  # undecided: its fate is logged later
            elif mute is not None:
                tr = replace(tr, muted=mute.reason, mute_detail=mute.detail)
        return tr, rows

    def _on_events(self, events, now: float, tr: Transition | None = None) -> list[dict]:
        rows: list[dict] = []
        for ev in events:
            self._changed[ev.incident.id] = ev.incident
            if isinstance(ev, (IncidentOpened, ConsequencePromoted)):
                for cid in (ev.incident.root, *ev.incident.consequences):
                    self.last_incident[cid] = ev.incident.id
                page = self._page(ev.incident, "alarm", now)
                rows += page
                self._log_fates(ev.incident, bool(page), tr, now)
            elif isinstance(ev, ConsequenceAttached):
                self.last_incident[ev.check_id] = ev.incident.id
                if tr is None or tr.check_id != ev.check_id:  # decided later than its alarm
                    self._log_fate(ev.check_id, ev.incident, "attached", now,
                                   MuteReason.DEPENDENCY, f"root cause: {ev.incident.title}")
            elif isinstance(ev, IncidentEscalated):
                rows += self._page(ev.incident, "alarm", now)
            elif isinstance(ev, IncidentResolved):
                self.unpaged.pop(ev.incident.id, None)
                if ev.incident.id in self.paged:
                    rows.append(self._resolve_row(ev.incident, tr, now))
            # IncidentReopened, the same fault bouncing, is no news: the resolve row
            # stored for it is cancelled by the worker once it finds the incident open
        return rows

    def _resolve_row(self, inc: Incident, tr: Transition | None, now: float) -> dict:
        """The resolve, stored now and said once the incident has stayed resolved for
        recovery_grace (a bouncing fault does not chatter): durable across a restart."""
        row = self._fan_out("resolve", inc.id, tr, now, inc)
        resolved = inc.resolved if inc.resolved is not None else now
        row["message"]["resolved_at"] = resolved
        row["dedup_key"] = f"{inc.id}/resolve@{resolved:.3f}"
        row["next_attempt_at"] = now + self.noise.incidents.recovery_grace
        return row

    def _log_fates(self, inc: Incident, paged: bool, tr: Transition | None, now: float) -> None:
        """An incident decided after its alarms were logged (they were held to let a root
        show up): log what became of each, so the log says who was told and why not."""
        root = self._root_check(inc)
        if tr is None or tr.check_id != root:
            mute = None if paged else self.noise.page_pipeline.decide(
                self._alert(root, inc.severity, inc.opened, now), now)
            self._log_fate(root, inc, "paged" if paged else "muted", now,
                           mute.reason if mute else None,
                           mute.detail if mute else f"root cause of {len(inc.consequences)}")
        for cid in inc.consequences:
            if cid != root and (tr is None or tr.check_id != cid):
                self._log_fate(cid, inc, "attached", now, MuteReason.DEPENDENCY,
                               f"root cause: {inc.title}")

    def _log_fate(self, check_id: str, inc: Incident, reason: str, now: float,
                  muted: MuteReason | None, detail: str) -> None:
        state = self.state_of(check_id)
        if state is None or check_id not in self.checks:
            return
        self._fates.append((Transition(
            check_id, now, state.severity, state.severity, state.current, state.acked,
            state.value, state.message, reason, muted=muted, mute_detail=detail,
            incident_id=inc.id), state))

    def _offer(self, check_id: str) -> None:
        inc = self.noise.incidents.incident_of(check_id)
        if inc is not None and inc.id not in self.paged:
            self.unpaged[inc.id] = inc

    def _live(self, incident_id: str) -> Incident | None:
        try:
            inc = self.noise.incidents.get(incident_id)
        except KeyError:
            return None
        return inc if inc.active else None

    # -- pages ----------------------------------------------------------------------------------

    def _root_check(self, inc: Incident) -> str:
        """The check an incident is routed as: its root, or for an IOC the first of its PVs."""
        if inc.kind == IncidentKind.IOC:
            return (inc.disconnected or inc.consequences or (inc.root,))[0]
        return inc.root

    def _page(self, inc: Incident, kind: str, now: float) -> list[dict]:
        if self.paged.get(inc.id, Severity.OK) >= inc.severity:
            return []  # already told at this severity
        check_id = self._root_check(inc)
        if check_id not in self.checks:
            return []
        if (inc.kind == IncidentKind.IOC and inc.id not in self.paged
                and now < inc.opened + self.noise.graph.settle):
            # a dead IOC's PVs keep arriving for a while (grace periods, `for:` delays):
            # page once the list is whole rather than with its first five
            self.unpaged[inc.id] = inc
            return []
        mute = self.noise.page_pipeline.decide(
            self._alert(check_id, inc.severity, inc.opened, now), now)
        if mute is not None:
            self.unpaged[inc.id] = inc
            return []
        first = inc.id not in self.paged
        extra = {} if first else {"previous_severity": self.paged.get(inc.id, Severity.OK)}
        rows = self._routed_or_fallback(inc, check_id, kind, now, extra)
        if rows is None:  # not even the fallback could be built: offered again next tick
            self.unpaged[inc.id] = inc
            return []
        self.unpaged.pop(inc.id, None)
        self._previous[inc.id] = self.paged.get(inc.id, Severity.OK)
        self.paged[inc.id] = inc.severity  # only once its rows exist: fail open, never shut
        return rows

    def _routed_or_fallback(self, inc: Incident, check_id: str, kind: str, now: float,
                            extra: dict) -> list[dict] | None:
        """The page's rows by the routes; when routing fails or reaches nobody, the same
        page to the top-level `fallback:` receivers, saying why. None: nothing could be built."""
        try:
            rows = self._alarm_rows(inc, check_id, kind, now, extra)
            why = None if rows else "no route reached anyone"
        except Exception as e:  # a routing bug must not swallow a page
            log.exception("routing the page of %s failed", check_id)
            rows, why = [], f"routing failed ({type(e).__name__}: {e})"
        if why is None:
            return rows
        if not self.config.fallback:
            if rows == [] and why.startswith("routing failed"):
                return None
            log.warning("the page of %s reached nobody: %s, and no fallback: is configured",
                        check_id, why)
            return rows
        try:
            return self._fallback_rows(inc, check_id, kind, now, extra, why)
        except Exception:
            log.exception("building the fallback page of %s failed", check_id)
            return None

    def _fallback_rows(self, inc: Incident, check_id: str, kind: str, now: float,
                       extra: dict, why: str) -> list[dict]:
        message = self._message(inc, check_id, kind, now, **extra)
        message["text"] = f"{message.get('text') or ''}\n[sent to the fallback: {why}]".strip()
        rows = []
        for dest, fallbacks in self._fallback_destinations(check_id, inc.severity, now):
            rows.append({"check_id": check_id, "incident_id": inc.id,
                         "receiver": f"fallback:{dest}", "destination": dest,
                         "route": f"fallback: {why}"[:200], "created_at": now,
                         "transition_index": None, "kind": "alarm",
                         "dedup_key": f"{inc.id}/{dest}/{inc.severity.name}/fallback",
                         "message": {**message, "fallbacks": fallbacks},
                         "next_attempt_at": now, "expires_at": now + self._expire(dest)})
        return rows

    def _fallback_destinations(self, check_id: str, severity: Severity,
                               now: float) -> list[tuple[str, list[str]]]:
        """Where the fallback receivers are reached; named channels without the router,
        so a broken router still leaves the fallback channels."""
        out = [(target, []) for target in self.config.fallback if target.startswith("channel:")]
        people = [t for t in self.config.fallback if not t.startswith("channel:")]
        if people:
            try:
                result = self.router.receivers(people, check_id, severity, now,
                                               label="fallback")
                out += [(r.notifier_names[0], list(r.notifier_names[1:]))
                        for r in result.recipients if r.notifier_names]
            except Exception:
                log.exception("the fallback's people could not be resolved")
        return out

    def _alert(self, check_id: str, severity: Severity, since: float, now: float) -> Alert:
        cfg = self.checks[check_id]
        return Alert(check_id, cfg.group, self._labels(check_id), severity, since,
                     self.noise.modes.mode(now))

    def _labels(self, check_id: str) -> dict[str, str]:
        """The check's labels, over the labels its sample brings (an `alert:` check's:
        those all its firing alerts share), for mute stages, routes and messages."""
        own = self.checks[check_id].labels
        brought = getattr(self.sample_of(check_id), "labels", None)
        return {**brought, **own} if brought else dict(own)

    def _message(self, inc: Incident, check_id: str, kind: str, now: float, **extra) -> dict:
        """The Message of a page, as the outbox row stores it (notify.Message.to_dict)."""
        cfg = self.checks[check_id]
        sample = self.sample_of(check_id)
        state = self.state_of(check_id)
        consequences = [self._related(cid) for cid in inc.consequences if cid in self.checks]
        return Message(
            kind=kind, beamline=self.config.beamline,
            title=inc.title if inc.kind == IncidentKind.IOC else cfg.title,
            severity=inc.severity, check_ids=(check_id,),
            value=value_text(sample.value) if sample is not None else "",
            text=(state.message if state else "") or inc.summary,
            time=now, since=inc.opened, incident_id=inc.id, mode=self.noise.modes.mode(now),
            link=self._link(inc.id), consequences=consequences, labels=self._labels(check_id),
            timezone=self.config.timezone, description=cfg.description or "",
            runbook=cfg.runbook or "", **extra,
        ).to_dict()

    def _related(self, check_id: str) -> Related:
        cfg = self.checks[check_id]
        state = self.state_of(check_id)
        sample = self.sample_of(check_id)
        # listed as a consequence: its own alarm is muted by the dependency
        return Related(check_id, cfg.title, state.severity if state else Severity.INVALID,
                       value_text(sample.value) if sample is not None else "",
                       MuteReason.DEPENDENCY.value)

    def _link(self, incident_id: str) -> str | None:
        base = self.config.web.url
        return f"{base.rstrip('/')}/incidents/{incident_id}" if base else None

    def _paged_before(self, incident_id: str) -> Severity:
        return self._previous.get(incident_id, Severity.OK)

    def _alarm_rows(self, inc: Incident, check_id: str, kind: str, now: float,
                    extra: dict) -> list[dict]:
        mode = self.noise.modes.mode(now)
        result = self.router.route(check_id, inc.severity, now, mode,
                                   labels=self._labels(check_id))
        base_message = self._message(inc, check_id, kind, now, **extra)
        message = base_message
        level = inc.severity.name
        rows = []
        for rcpt in result.recipients:
            if not rcpt.notifier_names:
                continue
            dest = rcpt.notifier_names[0]
            message = {**base_message, "fallbacks": list(rcpt.notifier_names[1:])}
            route = self.config.routes[rcpt.route] if rcpt.route is not None else None
            wait = route.group_wait if route else 0.0
            base = {"check_id": check_id, "incident_id": inc.id, "receiver": rcpt.key,
                    "destination": dest, "route": "; ".join(rcpt.via)[:200],
                    "created_at": now, "transition_index": None}
            key = f"{inc.id}/{dest}/{level}"
            rows.append({**base, "dedup_key": f"{key}/alarm", "kind": "alarm",
                         "message": message, "next_attempt_at": now + wait,
                         "expires_at": now + wait + self._expire(dest)})
            if rcpt.repeat:
                rows.append({**base, "dedup_key": f"{key}/repeat1", "kind": "repeat",
                             "next_attempt_at": now + rcpt.repeat,
                             "message": {**message, "kind": "repeat",
                                         "repeat_every": rcpt.repeat, "repeat_n": 1},
                             "expires_at": now + rcpt.repeat + self._expire(dest)})
        rows += self._held_rows(inc, check_id, result.held, base_message, "alarm",
                                lambda dest: f"{inc.id}/{dest}/{level}", now)
        for step in plan(self.router, result, now, mode):
            lv = step.level
            for rcpt in step.result.recipients:
                if not rcpt.notifier_names:
                    continue
                dest = rcpt.notifier_names[0]
                rows.append({
                    "check_id": check_id, "incident_id": inc.id, "receiver": rcpt.key,
                    "destination": dest, "created_at": now, "transition_index": None,
                    "route": f"escalation level {lv.level} of routes[{lv.route}]",
                    "dedup_key": f"{inc.id}/{level}/r{lv.route}e{lv.level}/{dest}",
                    "kind": "escalation", "next_attempt_at": step.at,
                    "message": {**base_message, "kind": "escalation",
                                "escalation_level": lv.level,
                                "fallbacks": list(rcpt.notifier_names[1:])},
                })
            rows += self._held_rows(
                inc, check_id, step.result.held,
                {**base_message, "kind": "escalation", "escalation_level": lv.level},
                "escalation", lambda dest, lv=lv: f"{inc.id}/{level}/r{lv.route}e{lv.level}/{dest}",
                now)
        return rows

    def _fan_out(self, kind: str, incident_id: str, tr: Transition | None, now: float,
                 inc: Incident | None = None) -> dict:
        """One row the worker expands to everyone told about `incident_id`."""
        check_id = tr.check_id if tr else (inc.root if inc else "")
        cfg = self.checks.get(check_id)
        if inc is not None and inc.kind == IncidentKind.IOC:
            title = inc.title
        else:
            title = cfg.title if cfg else check_id
        message = Message(
            kind=kind, beamline=self.config.beamline, title=title,
            # what people see: a resolve is OK even while a latched alarm waits for its ack
            severity=(tr.current if kind == "resolve" else tr.new) if tr else Severity.OK,
            check_ids=(check_id,),
            previous_severity=tr.old if tr else None,
            value=value_text(tr.value) if tr else "", text=tr.message if tr else "",
            time=now, incident_id=incident_id, mode=self.noise.modes.mode(now),
            link=self._link(incident_id), actor=tr.actor if tr else None,
            consequences=[self._related(c) for c in (inc.failing if inc else ())
                          if c in self.checks],
            timezone=self.config.timezone,
            description=(cfg.description or "") if cfg else "",
            runbook=(cfg.runbook or "") if cfg else "",
        ).to_dict()
        suffix = f"/{tr.actor}@{tr.time:.3f}" if kind == "ack" and tr else ""
        return {"check_id": check_id, "incident_id": incident_id,
                "receiver": TOLD + incident_id, "destination": "*", "route": None,
                "created_at": now, "kind": kind, "message": message,
                "dedup_key": f"{incident_id}/{kind}{suffix}"}

    def _expire(self, dest: str) -> float:
        name = dest.split(":", 1)[1] if dest.startswith("channel:") else None
        channel = self.config.channels.get(name) if name else None
        return channel.expire if channel else 3600.0

    # -- pages held by quiet hours ------------------------------------------------------------

    def _held_rows(self, inc: Incident, check_id: str, held: tuple[Held, ...], message: dict,
                   kind: str, key: Callable[[str], str], now: float) -> list[dict]:
        """A page quiet hours held from someone is offered to them again when their quiet
        hours end, as a durable row due then; the worker cancels it if the alarm is over
        or acknowledged by that time."""
        rows = []
        for h in held:
            rcpt = self.router.reoffer(h, inc.severity)
            if rcpt is None or h.until is None:
                continue
            dest = rcpt.notifier_names[0]
            text = message.get("text") or ""
            since = show(now, self.config.people[h.name].timezone or self.config.timezone)
            rows.append({
                "check_id": check_id, "incident_id": inc.id, "receiver": rcpt.key,
                "destination": dest, "route": "; ".join(rcpt.via)[:200],
                # "created" when offered: group_wait, fail-over and expiry count from the
                # morning, not from the night the page was decided
                "created_at": h.until, "transition_index": None,
                "dedup_key": key(dest) + HELD, "kind": kind, "next_attempt_at": h.until,
                "expires_at": h.until + self._expire(dest),
                "message": {**message, "fallbacks": list(rcpt.notifier_names[1:]),
                            "text": f"{text} (held by quiet hours since {since})".lstrip()},
            })
        return rows
