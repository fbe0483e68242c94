"""Incidents: one fault, one incident, one page — its consequences listed, not paged.

An incident lives from the first non-OK of a root cause back to its OK. A
check that fails is *held* (pending) for the dependency graph's `settle`
seconds if it could be a consequence — it has upstream checks, or it lost its
connection and may be one PV of a dead IOC — so that a root reported a little
later still claims it. Then it either attaches to the incident of its root
cause (ConsequenceAttached: update the message, page nobody) or opens an
incident of its own (IncidentOpened: page).

When the root recovers the incident is resolved. Consequences still failing
get `recovery_grace` seconds to follow it back (a valve reopening after the
vacuum recovers takes a while); those still failing after that were never only
consequences and become incidents of their own (ConsequencePromoted: page),
or attach to another still-open root. A root that fails again within
`recovery_grace` reopens its incident (IncidentReopened: no new page) — a
bouncing vacuum is one fault, not one per bounce.

IOC grouping: when at least `ioc_min` checks served by one host:port lose
their connection within `ioc_window` seconds, that is one fault — "IOC
host:port unreachable (N PVs)" — whose consequences are those checks and
everything downstream of them.

The tracker is driven by the engine: `update()` on every severity change of a
check, `tick()` once a second, `restore()` at start-up. All return events
(dataclasses below) for the engine to store and notify; PAGING_EVENTS are the
ones that should reach a person. Pure logic: no I/O, time always passed in.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType

from ..model import Severity
from ..model.incident import IOC_PREFIX, Incident, IncidentKind
from .deps import DependencyGraph

# --- events ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IncidentOpened:
    """A new fault: page. `incident.consequences` already lists those attached
    in the same call (they get no ConsequenceAttached of their own)."""

    time: float
    incident: Incident


@dataclass(frozen=True, slots=True)
class ConsequenceAttached:
    """`check_id` failed because of `incident`'s root: update the message, no page."""

    time: float
    incident: Incident
    check_id: str


@dataclass(frozen=True, slots=True)
class ConsequenceCleared:
    """A consequence is OK again while its root is still failing."""

    time: float
    incident: Incident
    check_id: str


@dataclass(frozen=True, slots=True)
class IncidentEscalated:
    """The worst severity in the incident rose (e.g. MINOR → MAJOR): routes that
    wait for the higher severity should now be paged."""

    time: float
    incident: Incident
    old: Severity
    new: Severity


@dataclass(frozen=True, slots=True)
class IncidentResolved:
    """The root is OK again. `incident.failing` lists consequences still failing:
    they get `recovery_grace` to recover before they are promoted."""

    time: float
    incident: Incident


@dataclass(frozen=True, slots=True)
class IncidentReopened:
    """The root failed again within `recovery_grace` of its recovery: the same
    fault, bouncing. The incident is open again with the consequences that had
    not recovered; people were paged for it minutes ago, so this is an update."""

    time: float
    incident: Incident


@dataclass(frozen=True, slots=True)
class ConsequencePromoted:
    """A consequence outlived its root: it is now the root of `incident` — page."""

    time: float
    incident: Incident
    check_id: str
    from_incident: str


IncidentEvent = (IncidentOpened | ConsequenceAttached | ConsequenceCleared | IncidentEscalated
                 | IncidentResolved | IncidentReopened | ConsequencePromoted)

PAGING_EVENTS = (IncidentOpened, ConsequencePromoted, IncidentEscalated)


@dataclass(frozen=True, slots=True)
class FailingCheck:
    """What `restore` needs to know about a check that is not OK at start-up."""

    severity: Severity
    since: float  # its first non-OK
    server: str | None = None
    disconnected_at: float | None = None


# --- internal state ---------------------------------------------------------------------------


class _State(enum.Enum):
    PENDING = "pending"  # held: waiting for a root to show up
    ATTACHED = "attached"  # root or consequence of an open incident
    ORPHAN = "orphan"  # its root recovered; waiting out recovery_grace


@dataclass
class _Failure:
    check_id: str
    first_failed: float
    severity: Severity
    state: _State = _State.PENDING
    deadline: float = 0.0
    incident: str | None = None
    server: str | None = None
    disconnected_at: float | None = None
    orphan_of: str | None = None


@dataclass
class _Live:
    """An open incident and its members, kept incrementally (an IOC can have
    thousands of PVs: no per-event scans)."""

    incident: Incident
    members: dict[str, None] = field(default_factory=dict)  # consequences ever attached, ordered
    failing: dict[str, None] = field(default_factory=dict)  # members attached and not OK now
    pvs: dict[str, None] = field(default_factory=dict)  # IOC: members that lost the IOC
    disc: set[str] = field(default_factory=set)  # IOC: members still disconnected

    def join(self, f: _Failure, pv: bool) -> None:
        f.state, f.incident, f.orphan_of = _State.ATTACHED, self.incident.id, None
        self.members[f.check_id] = None
        self.failing[f.check_id] = None
        if pv:
            self.pvs[f.check_id] = None
            if f.disconnected_at is not None:
                self.disc.add(f.check_id)

    def leave(self, check_id: str) -> None:
        self.failing.pop(check_id, None)
        self.disc.discard(check_id)

    def snapshot(self, bump: Severity = Severity.OK) -> Incident:
        """A fresh snapshot; `bump`: a severity just seen in the incident (the worst
        one ever seen is kept, so an escalation is reported once)."""
        inc = self.incident
        severity = max(inc.severity, bump) if inc.resolved is None else inc.severity
        self.incident = replace(inc, consequences=tuple(self.members),
                                failing=tuple(self.failing), disconnected=tuple(self.pvs),
                                severity=severity)
        return self.incident


class IncidentTracker:
    """Turns per-check failures into incidents. See the module docstring.

    `graph`: the dependency graph; its `settle` is the hold time.
    `recovery_grace`: how long consequences may outlive their root before they
    are promoted. `ioc_min` checks of one server disconnecting within
    `ioc_window` seconds make an IOC incident. `id_factory(root, opened) -> id`
    names incidents (default: random 12 hex digits).
    """

    def __init__(self, graph: DependencyGraph | None = None, *, recovery_grace: float = 30.0,
                 ioc_min: int = 5, ioc_window: float = 5.0,
                 id_factory: Callable[[str, float], str] | None = None):
        self.graph = graph or DependencyGraph({})
        self.recovery_grace = recovery_grace
        self.ioc_min = ioc_min
        self.ioc_window = ioc_window
        self._new_id = id_factory or (lambda root, t: uuid.uuid4().hex[:12])
        self._failures: dict[str, _Failure] = {}
        self._first_failed: dict[str, float] = {}
        self._incidents: dict[str, _Live] = {}
        self._outage: dict[str, str] = {}  # server -> open IOC incident id
        self._down: dict[str, set[str]] = {}  # server -> its failing checks now disconnected
        self._moved: list[str] = []  # checks attached since the last _settle round
        self._recent: dict[str, tuple[_Live, float]] = {}  # root -> resolved incident, when

    # -- queries -----------------------------------------------------------------------------

    @property
    def failing(self) -> Mapping[str, float]:
        """Live read-only view: check id -> first non-OK time (for DependencyMuter)."""
        return MappingProxyType(self._first_failed)

    def is_held(self, check_id: str) -> bool:
        """True while a new failure waits to learn whether it is a consequence:
        do not notify it yet."""
        f = self._failures.get(check_id)
        return f is not None and f.state == _State.PENDING

    def incident_of(self, check_id: str) -> Incident | None:
        f = self._failures.get(check_id)
        if f is None or f.incident is None or f.state != _State.ATTACHED:
            return None
        return self._incidents[f.incident].incident

    def root_of(self, check_id: str) -> str | None:
        """The root cause's title if `check_id` is a consequence in an open incident."""
        inc = self.incident_of(check_id)
        if inc is None or inc.root == check_id:
            return None
        return inc.title

    def open_incidents(self) -> list[Incident]:
        return sorted((live.incident for live in self._incidents.values()),
                      key=lambda i: (i.opened, i.id))

    def get(self, incident_id: str) -> Incident:
        return self._incidents[incident_id].incident

    # -- inputs ------------------------------------------------------------------------------

    def update(self, check_id: str, severity: Severity, now: float, *, server: str | None = None,
               disconnected_at: float | None = None) -> list[IncidentEvent]:
        """The check's alarm severity is now `severity`.

        `server`: the host:port its samples come from; `disconnected_at`: when
        it lost its connection, if that is why it fails (None: connected).
        """
        out: list[IncidentEvent] = []
        f = self._failures.get(check_id)
        if severity == Severity.OK:
            if f is not None:
                self._recovered(f, now, out)
        elif f is None:
            f = _Failure(check_id, now, severity, server=server, disconnected_at=disconnected_at)
            hold = self.graph.settle_deadline(check_id, now) - now
            if disconnected_at is not None and server is not None:
                hold = max(hold, self.ioc_window)
            f.deadline = now + hold
            self._failures[check_id] = f
            self._first_failed[check_id] = now
            self._reopen(check_id, now, out, [f])
            self._track_connection(f, now, out)
        else:
            was_disconnected = f.disconnected_at is not None
            f.server = server or f.server
            f.disconnected_at = disconnected_at
            if f.severity != severity:
                f.severity = severity
                if f.state == _State.ATTACHED:
                    self._reseverity(f, now, out)
            if was_disconnected and disconnected_at is None:
                self._reconnected(f, now, out)
            elif disconnected_at is not None and not was_disconnected:
                self._track_connection(f, now, out)
        self._settle(now, out, [check_id] if severity != Severity.OK else [])
        return _fold(out)

    def tick(self, now: float) -> list[IncidentEvent]:
        """Time passed: held failures and orphans whose time is up are decided."""
        out: list[IncidentEvent] = []
        due = [c for c, f in self._failures.items()
               if f.state != _State.ATTACHED and f.deadline <= now]
        self._settle(now, out, due)
        return _fold(out)

    def restore(self, incidents: Iterable[Incident], failing: Mapping[str, FailingCheck],
                now: float) -> list[IncidentEvent]:
        """Start-up: take back the incidents that were open (from the store) and the
        checks failing now, so that a restart pages nobody twice. Incidents whose
        root is no longer failing are resolved; failures that belong to no
        incident are held as new ones (they were never paged)."""
        out: list[IncidentEvent] = []
        for cid, fc in failing.items():
            f = _Failure(cid, fc.since, fc.severity, server=fc.server,
                         disconnected_at=fc.disconnected_at)
            hold = self.graph.settle_deadline(cid, fc.since) - fc.since
            if fc.disconnected_at is not None and fc.server is not None:
                hold = max(hold, self.ioc_window)
                self._down.setdefault(fc.server, set()).add(cid)
            f.deadline = fc.since + hold
            self._failures[cid] = f
            self._first_failed[cid] = fc.since
        stale: list[str] = []
        for inc in incidents:
            if inc.resolved is not None:
                continue
            live = _Live(inc, members=dict.fromkeys(inc.consequences),
                         pvs=dict.fromkeys(inc.disconnected))
            self._incidents[inc.id] = live
            root = self._failures.get(inc.root)
            if root is not None:
                root.state, root.incident = _State.ATTACHED, inc.id
            for c in inc.consequences:
                f = self._failures.get(c)
                if f is not None and f.state == _State.PENDING:
                    live.join(f, pv=c in live.pvs)
            live.snapshot()
            if inc.kind == IncidentKind.IOC and inc.server is not None:
                self._outage[inc.server] = inc.id
                if not live.disc:
                    stale.append(inc.id)
            elif root is None:
                stale.append(inc.id)
        for iid in stale:
            self._resolve(iid, now, out)
        self._settle(now, out, [c for c, f in self._failures.items()
                                if f.state != _State.ATTACHED])
        return _fold(out)

    # -- deciding held failures --------------------------------------------------------------

    def _settle(self, now: float, out: list[IncidentEvent], start: list[str]) -> None:
        """Decide the held and orphaned failures in `start`, upstream first; then,
        round after round, those downstream of anything that got an incident (a
        root that opens settles the consequences waiting for it)."""
        todo = set(start)
        while True:
            for moved in self._moved:
                todo |= self.graph.downstream(moved)
            self._moved.clear()
            batch = [self._failures[c] for c in todo
                     if c in self._failures and self._failures[c].state != _State.ATTACHED]
            if not batch:
                return
            todo = set()
            batch.sort(key=lambda f: (self.graph.rank(f.check_id), f.first_failed, f.check_id))
            for f in batch:
                if f.state != _State.ATTACHED:
                    self._decide(f, now, out)

    def _decide(self, f: _Failure, now: float, out: list[IncidentEvent]) -> bool:
        if f.state == _State.ORPHAN and now < f.deadline:
            return False
        if f.state == _State.PENDING and f.disconnected_at is not None and f.server:
            outage = self._outage.get(f.server)
            if outage is not None:
                self._attach(f, outage, now, out, pv=True)
                return True
            if now < f.deadline:
                return False  # a dead IOC explains a lost connection best: wait for it
        roots = self.graph.root_causes(f.check_id, self._first_failed, now)
        if roots:
            owners = [self._failures[r].incident for r in roots
                      if self._failures[r].state == _State.ATTACHED]
            if owners:
                first = min(owners, key=lambda i: (self._incidents[i].incident.opened, i))
                self._attach(f, first, now, out)
                return True
            return False  # its roots are still held: wait for them
        if f.state == _State.PENDING and now < f.deadline:
            return False
        if f.state == _State.ORPHAN:
            was = f.orphan_of or ""
            inc = self._open(f.check_id, IncidentKind.CHECK, now, [f], promoted_from=was)
            out.append(ConsequencePromoted(now, inc, f.check_id, was))
        else:
            inc = self._open(f.check_id, IncidentKind.CHECK, now, [f])
            out.append(IncidentOpened(now, inc))
        return True

    # -- incidents ---------------------------------------------------------------------------

    def _open(self, root: str, kind: IncidentKind, now: float, root_failures: list[_Failure], *,
              server: str | None = None, promoted_from: str | None = None) -> Incident:
        iid = self._new_id(root, now)
        sev = max((f.severity for f in root_failures), default=Severity.OK)
        inc = Incident(iid, kind, root, now, sev, server=server, promoted_from=promoted_from)
        self._incidents[iid] = _Live(inc)
        for f in root_failures:
            f.state, f.incident, f.orphan_of = _State.ATTACHED, iid, None
            self._moved.append(f.check_id)
        return inc

    def _attach(self, f: _Failure, iid: str, now: float, out: list[IncidentEvent],
                pv: bool = False) -> None:
        live = self._incidents[iid]
        live.join(f, pv)
        self._moved.append(f.check_id)
        old = live.incident.severity
        inc = live.snapshot(f.severity)
        out.append(ConsequenceAttached(now, inc, f.check_id))
        if inc.severity > old:
            out.append(IncidentEscalated(now, inc, old, inc.severity))

    def _reseverity(self, f: _Failure, now: float, out: list[IncidentEvent]) -> None:
        live = self._incidents.get(f.incident or "")
        if live is None:
            return
        old = live.incident.severity
        inc = live.snapshot(f.severity)
        if inc.severity > old:
            out.append(IncidentEscalated(now, inc, old, inc.severity))

    def _resolve(self, iid: str, now: float, out: list[IncidentEvent]) -> None:
        live = self._incidents.pop(iid)
        live.snapshot()
        inc = live.incident = replace(live.incident, resolved=now)
        if inc.kind == IncidentKind.IOC and inc.server is not None:
            self._outage.pop(inc.server, None)
        for c in inc.failing:
            f = self._failures[c]
            f.state, f.incident, f.orphan_of = _State.ORPHAN, None, iid
            f.deadline = now + self.recovery_grace
        self._recent[inc.root] = (live, now)
        out.append(IncidentResolved(now, inc))

    def _reopen(self, root: str, now: float, out: list[IncidentEvent],
                root_failures: list[_Failure]) -> str | None:
        """Reopen `root`'s incident if it resolved less than `recovery_grace` ago,
        taking back its consequences still failing."""
        for r, (_, t) in list(self._recent.items()):
            if now - t > self.recovery_grace:
                del self._recent[r]
        if root not in self._recent:
            return None
        live, _ = self._recent.pop(root)
        iid = live.incident.id
        live.incident = replace(live.incident, resolved=None)
        self._incidents[iid] = live
        for f in root_failures:
            f.state, f.incident, f.orphan_of = _State.ATTACHED, iid, None
            self._moved.append(f.check_id)
        live.failing.clear()
        live.disc.clear()
        for c in list(live.members):
            f = self._failures.get(c)
            if f is not None and f.state == _State.ORPHAN and f.orphan_of == iid:
                live.join(f, pv=c in live.pvs)
                self._moved.append(c)
        if live.incident.kind == IncidentKind.IOC and live.incident.server is not None:
            self._outage[live.incident.server] = iid
        bump = max((f.severity for f in root_failures), default=Severity.OK)
        out.append(IncidentReopened(now, live.snapshot(bump)))
        return iid

    # -- recoveries --------------------------------------------------------------------------

    def _recovered(self, f: _Failure, now: float, out: list[IncidentEvent]) -> None:
        del self._failures[f.check_id]
        del self._first_failed[f.check_id]
        if f.server is not None:
            self._down.get(f.server, set()).discard(f.check_id)
        if f.state != _State.ATTACHED or f.incident is None:
            return  # held or orphaned: never paged on its own, nothing to say
        live = self._incidents[f.incident]
        if live.incident.root == f.check_id:
            self._resolve(f.incident, now, out)
            return
        live.leave(f.check_id)
        out.append(ConsequenceCleared(now, live.snapshot(), f.check_id))
        self._end_outage_if_back(live, now, out)

    def _reconnected(self, f: _Failure, now: float, out: list[IncidentEvent]) -> None:
        """Connected again but still failing: no longer evidence of a dead IOC."""
        if f.server is not None:
            self._down.get(f.server, set()).discard(f.check_id)
        live = self._incidents.get(f.incident or "") if f.state == _State.ATTACHED else None
        if live is not None:
            live.disc.discard(f.check_id)
            self._end_outage_if_back(live, now, out)

    def _end_outage_if_back(self, live: _Live, now: float, out: list[IncidentEvent]) -> None:
        if live.incident.kind == IncidentKind.IOC and not live.disc:
            self._resolve(live.incident.id, now, out)

    # -- IOC grouping ------------------------------------------------------------------------

    def _track_connection(self, f: _Failure, now: float, out: list[IncidentEvent]) -> None:
        """A failure because of a lost connection: count it towards its server's outage."""
        if f.disconnected_at is None or f.server is None:
            return
        self._down.setdefault(f.server, set()).add(f.check_id)
        if f.server not in self._outage:
            self._maybe_outage(f.server, now, out)

    def _maybe_outage(self, server: str, now: float, out: list[IncidentEvent]) -> None:
        """Open an IOC incident if `ioc_min` of the server's checks disconnected within
        `ioc_window`; it claims the server's held disconnected checks."""
        down = sorted((self._failures[c].disconnected_at or 0.0, c) for c in self._down[server])
        times = [t for t, _ in down]
        j = 0
        for i in range(len(times)):
            while times[i] - times[j] > self.ioc_window:
                j += 1
            if i - j + 1 >= self.ioc_min:
                break
        else:
            return
        held = [self._failures[c] for _, c in down if self._failures[c].state != _State.ATTACHED]
        iid = self._reopen(IOC_PREFIX + server, now, out, [])
        reopened = iid is not None
        if iid is None:
            iid = self._open(IOC_PREFIX + server, IncidentKind.IOC, now, [], server=server).id
        self._outage[server] = iid
        live = self._incidents[iid]
        for f in held:
            live.join(f, pv=True)
            self._moved.append(f.check_id)
        inc = live.snapshot(max((f.severity for f in held), default=Severity.OK))
        if reopened:  # the reopening event should show the PVs it just took back
            k = max(i for i, ev in enumerate(out) if isinstance(ev, IncidentReopened)
                    and ev.incident.id == iid)
            out[k] = IncidentReopened(out[k].time, inc)
        else:
            out.append(IncidentOpened(now, inc))


def _fold(events: list[IncidentEvent]) -> list[IncidentEvent]:
    """Within one call, fold what happened to a just-opened (or reopened) incident
    into that event, so the first page already names every consequence known then."""
    opened: dict[str, int] = {}
    latest: dict[str, Incident] = {}
    for ev in events:
        if ev.incident.resolved is None:
            latest[ev.incident.id] = ev.incident
    out: list[IncidentEvent] = []
    for ev in events:
        iid = ev.incident.id
        if isinstance(ev, IncidentOpened | IncidentReopened | ConsequencePromoted):
            opened[iid] = len(out)
            out.append(ev)
        elif iid in opened and isinstance(ev, ConsequenceAttached | IncidentEscalated):
            continue
        else:
            out.append(ev)
    for iid, k in opened.items():
        out[k] = replace(out[k], incident=latest[iid])
    return out
