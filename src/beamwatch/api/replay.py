"""`beamwatch replay`: run a (new) config over the stored history, offline, and say
what it would have notified versus what was notified — a dry run of a config
change before it goes live.

How
---
The live log (the store named by `storage.url`) is only read. A fresh `App`
runs the given config on a throw-away SQLite file, fed by a `SoftSource` and
driven by a `FakeClock`, from `since - warmup` (alarms already standing when
the period starts are raised in the warm-up, not counted) to `until`:

* values: the per-minute history (`value_history`: min, max, last, count) of
  each check *id* becomes up to three samples in that minute, in the order
  that makes the smoothest path from the previous minute's last value
  (prev -> nearer extreme -> farther extreme -> last). The minute had `count`
  evenly spaced updates; ours take consecutive ones of those slots in the
  middle of the minute (an extreme lasts one update, as it did). Where a
  logged evaluation says "the value was v at t", the sample bringing v is put
  at t - `for:` (not before its minute, not after t) and the others next to
  it. A check with `stale:` also gets repeats of the value in force, as many
  as the minute's updates allow, so its gaps are the live ones. A minute with
  no row had no update (Channel Access posts on change): the value stays.
* connections: a logged transition whose message starts with "disconnected"
  or "no value" means the PV went away `disconnect_grace` before it; it comes
  back at the first history row after that (or the next other transition).
* the record's own EPICS severity (not in the history) is taken from logged
  transitions saying "record alarm SEVERITY" — only for checks that use it.
* acknowledgements in the log are applied at their time (to the new alarms),
  the logged mode changes are replayed as mode overrides, and the silences
  stored for the period are put in as they were.
* notifications: the real outbox worker runs, but every notifier is a dry
  one that only says "sent" — nothing leaves the process. So fan-out
  (resolve/ack to those told), cancelled repeats and escalations, repeat
  chains and group_wait behave as live.

Time jumps from one event to the next (samples, acks, mode changes, silence
and maintenance edges, due outbox rows, `for:`, grace and stale deadlines, the
decider's held resolves) and goes second by second only while something is
settling (held incidents, flapping); muted pages are re-offered every 30 s and
nothing waits more than a minute for a tick.

The comparison: `alarm`, `repeat`, `escalation`, `resolve` and `ack`
notifications sent (or due: pending, failed) in [since, until], on both sides;
a repeat or escalation still pending is not counted (the worker decides when it
is due whether it goes). They are matched by (root check, receiver, kind) and
time within `tolerance` seconds; incident ids differ between the runs.
"""

from __future__ import annotations

import asyncio
import json
import math
import tempfile
import time as _time
from bisect import bisect_right
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import and_, func, or_, select

from ..clock import FakeClock
from ..config.schema import CheckConfig, Config
from ..engine.modes import ModeChange
from ..engine.noise import maintenance_windows
from ..model import Severity
from ..notify.base import Delivery
from ..sources.soft import SoftSource
from ..store import Store
from ..store import tables as t
from ..store.noise import NoiseStore
from ..store.outbox import Outbox

KINDS = ("alarm", "repeat", "escalation", "resolve", "ack")
COUNTED = ("sent", "pending", "failed")  # a decided notification; not cancelled/folded/expanded
FOLLOW_UPS = ("repeat", "escalation")
DISCONNECTED = ("disconnected", "no value")  # transition messages that mean "lost the PV"
BOTH, ONLY_NEW, ONLY_OLD = "both", "only new", "only old"
FAR = 10 * 365 * 86400.0
IDLE = 60.0  # tick at least this often anyway (bounds the lateness of a timer not known here)
UNPAGED_EVERY = 30.0  # a muted page waiting for its mute to end is re-offered this often

Progress = Callable[[float, float], None]  # (seconds replayed, seconds in all)

APPROXIMATIONS = [
    "values come from the per-minute history (min, max, last): within a minute the order "
    "and the timing are guessed (smoothest path, extremes brief, pinned where a logged "
    "evaluation says when), so a `for:` shorter than a minute, two spikes in one minute "
    "and a MINOR turning MAJOR within a minute are approximate",
    "a disconnection starts disconnect_grace before the stored transition saying so and "
    "ends at the next history row; the IOC (server) is read from that message",
    "the record's EPICS severity is known only where a stored transition names it",
    "the mode is what the log says it was (logged mode changes, as overrides); a changed "
    "mode schedule or mode PV mapping in the new config has no effect",
    "acknowledgements are replayed at their logged time; an alarm the new config raises "
    "later than the logged ack stays unacknowledged",
    "notifications match by root check, receiver and kind within the tolerance; incident "
    "ids differ between the runs",
    "delivery always succeeds in the replay: no retries, fallbacks or folded summaries",
]


# --- the report ---------------------------------------------------------------------------


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


# --- the public entry points -----------------------------------------------------------------


def replay(config: Config, store: Store, since: float, until: float | None = None,
           progress: Progress | None = None, *, config_path: str | Path | None = None,
           warmup: float = 3600.0, tolerance: float = 300.0) -> ReplayReport:
    """Replay `config` over `store` (read only) for [since, until]; see the module doc.
    `config_path`: the file `config` came from (calendars are read relative to it)."""
    return asyncio.run(areplay(config, store, since, until, progress, config_path=config_path,
                               warmup=warmup, tolerance=tolerance))


async def areplay(config: Config, store: Store, since: float, until: float | None = None,
                  progress: Progress | None = None, *, config_path: str | Path | None = None,
                  warmup: float = 3600.0, tolerance: float = 300.0) -> ReplayReport:
    started = _time.monotonic()
    until = _time.time() if until is None else until
    if until <= since:
        raise ValueError("the period is empty: --until must be after --since")
    plan = _Plan.read(config, store, since, until, warmup)
    report = ReplayReport(config.beamline, since, until, plan.start, checks=len(config.checks))
    report.replayed, report.no_data = plan.replayed, plan.no_data
    report.not_in_config = plan.not_in_config
    report.transitions_old = plan.transitions_in_window
    report.history_rows = plan.history_in_window
    report.notes += plan.notes
    with tempfile.TemporaryDirectory(prefix="beamwatch-replay-") as tmp:
        run = _Run(plan, Path(tmp), config_path, progress)
        try:
            await run.go()
            new = _decided(Outbox(run.app.store).rows(), since, until)
            report.transitions_new = sum(
                1 for lt in run.app.store.transitions(since=since, until=until)
                if lt.transition.reason != "ack")
        finally:
            await run.close()
        report.samples, report.ticks = run.samples, run.ticks
        report.notes += run.notes
    old = _decided(_live_rows(store, since, until), since, until)
    report.rows = compare(new, old, tolerance)
    folded = _count_live(store, since, until, ("folded", "expired"))
    if folded:
        report.notes.append(f"{folded} live notification(s) were folded or expired "
                            "(delivery trouble); the replay does not model delivery")
    if report.empty:
        report.notes.insert(0, "nothing to replay: the log has no value history and no "
                               "transitions in this period")
    report.elapsed = _time.monotonic() - started
    return report


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


# --- reading the live log ----------------------------------------------------------------------


@dataclass(order=True)
class _Event:
    time: float
    order: int  # at one time: mode (0), connection (1), value (2), ack (3), wake (4)
    seq: int
    kind: str = field(compare=False)
    address: str = field(compare=False, default="")
    data: Any = field(compare=False, default=None)


@dataclass
class _Plan:
    """Everything read from the live store, as a time-ordered list of events."""

    config: Config
    since: float
    until: float
    start: float
    events: list[_Event] = field(default_factory=list)
    silences: list = field(default_factory=list)
    no_data: list[str] = field(default_factory=list)
    replayed: list[str] = field(default_factory=list)
    not_in_config: list[str] = field(default_factory=list)
    servers: dict[str, str | None] = field(default_factory=dict)  # address -> IOC
    first: dict[str, float] = field(default_factory=dict)  # address -> its first event
    transitions_in_window: int = 0
    history_in_window: int = 0  # value_history rows in [since, until]
    notes: list[str] = field(default_factory=list)
    _seq: int = 0

    def add(self, time: float, order: int, kind: str, address: str = "", data: Any = None
            ) -> None:
        self._seq += 1
        self.events.append(_Event(time, order, self._seq, kind, address, data))

    @classmethod
    def read(cls, config: Config, store: Store, since: float, until: float,
             warmup: float) -> _Plan:
        start = math.floor((since - max(0.0, warmup)) / 60.0) * 60.0  # whole minutes
        plan = cls(config, since, until, start)
        logged = store.transitions(until=until)
        by_check: dict[str, list] = {}
        for lt in logged:
            by_check.setdefault(lt.transition.check_id, []).append(lt.transition)
        ids = set(config.check_ids)
        in_window = [tr for trs in by_check.values() for tr in trs if since <= tr.time <= until]
        plan.transitions_in_window = sum(tr.reason != "ack" for tr in in_window)
        plan.not_in_config = sorted({tr.check_id for tr in in_window} - ids)
        latest = store.latest()
        # one feed per address: checks sharing a PV share its samples
        feeds: dict[tuple[str, str], list[CheckConfig]] = {}
        for c in config.checks:
            if c.internal is None:  # beamwatch's own health is not a log to replay
                feeds.setdefault((c.source or "ca", c.pv or ""), []).append(c)
        for (_source, address), checks in feeds.items():
            plan._feed(store, address, checks, by_check, latest)
        for tr in (tr for trs in by_check.values() for tr in trs):
            if tr.reason == "ack" and tr.check_id in ids and start <= tr.time <= until:
                plan.add(tr.time, 3, "ack", data=(tr.check_id, tr.actor or "someone"))
        plan._modes(store)
        plan._silences(store)
        for w in maintenance_windows(config):
            for edge in _edges(w.window, start, until):
                plan.add(edge, 4, "wake")
        plan.events.sort()
        for ev in plan.events:
            if ev.address and ev.address not in plan.first:
                plan.first[ev.address] = ev.time
        return plan

    def _feed(self, store: Store, address: str, checks: list[CheckConfig],
              by_check: dict[str, list], latest: dict) -> None:
        start, until = self.start, self.until
        rows: list[dict] = []
        owner = None
        for c in checks:  # the first check of this PV that has history speaks for it
            rows = store.history(c.id, start, until)
            before = _last_before(store, c.id, start)
            if rows or before is not None or any(
                    tr.time >= start for tr in by_check.get(c.id, ())):
                owner = c
                break
        if owner is None:
            self.no_data += [c.id for c in checks]
            return
        self.replayed += [c.id for c in checks]
        rows = [r for r in rows if r["minute"] * 60 >= start]
        self.history_in_window += sum(self.since <= r["minute"] * 60 + 59 for r in rows)
        trs = [tr for c in checks for tr in by_check.get(c.id, ())]
        trs.sort(key=lambda tr: tr.time)
        grace = max(c.disconnect_grace for c in checks)
        server = self._server(owner, trs, latest)
        self.servers[address] = server
        # connections: (down, up) intervals from the log
        downs = _disconnections(trs, rows, grace, until)
        # the record's own severity, where the log says it
        epics = any(_uses_epics(c) for c in checks)
        sev_changes = _record_severities(trs) if epics else []
        # the state at the start
        if before is not None:  # first at `start`: before a disconnection going on then
            self.add(start, 1, "value", address, before["vlast"])
        for t_sev, sev in sev_changes:
            if t_sev < start:
                continue
            self.add(t_sev, 1, "severity", address, sev)
        initial_sev = next((s for t_sev, s in reversed(sev_changes) if t_sev < start), None)
        if initial_sev is not None:
            self.add(start, 1, "severity", address, initial_sev)
        for d, u in downs:
            if u is not None and u <= start:
                continue
            self.add(max(d, start), 1, "down", address)
            if u is not None:
                self.add(u, 1, "up", address)
        # values
        stale = min((c.stale for c in checks if c.stale), default=None)
        anchors = _anchors(owner, trs, rows, start, until)
        prev = before["vlast"] if before is not None else None
        for r in rows:
            m0 = r["minute"] * 60.0
            lo, hi = _connected_span(m0, m0 + 60.0, downs)
            path = _path(prev, r)
            count = max(int(r.get("count") or 1), 1)
            times = _times(path, lo, hi, anchors.get(r["minute"]), count)
            samples = list(zip(times, path, strict=True))
            if stale:  # as many updates as the minute had, up to what keeps it fresh
                samples = _fill(samples, prev, lo, hi, min(count, int(60.0 / stale) + 1))
            for when, v in samples:
                self.add(when, 2, "value", address, v)
            prev = r["vlast"]

    def _server(self, owner: CheckConfig, trs: list, latest: dict) -> str | None:
        for tr in reversed(trs):
            if tr.message and "(IOC " in tr.message:
                return tr.message.rsplit("(IOC ", 1)[1].rstrip(")").strip() or None
        lv = latest.get(owner.id)
        return lv.server if lv is not None else None

    def _modes(self, store: Store) -> None:
        changes = NoiseStore(store).mode_changes()
        before = [c for c in changes if c.time < self.start]
        during = [c for c in changes if self.start <= c.time <= self.until]
        if before:
            self.add(self.start, 0, "mode", data=before[-1])
        elif during:
            first = during[0]
            self.add(self.start, 0, "mode", data=ModeChange(self.start, first.old, first.old,
                                                             first.source, None, "before"))
        for c in during:
            self.add(c.time, 0, "mode", data=c)

    def _silences(self, store: Store) -> None:
        self.silences = [s for s in NoiseStore(store).silences(since=self.start)
                         if s.start <= self.until]
        for s in self.silences:
            for edge in (s.start, s.end):
                if self.start < edge <= self.until:
                    self.add(edge, 4, "wake")


def _last_before(store: Store, check_id: str, start: float) -> dict | None:
    h = t.value_history.c
    q = (select(t.value_history).where(h.check_id == check_id, h.minute < int(start // 60))
         .order_by(h.minute.desc()).limit(1))
    with store.engine.connect() as conn:
        r = conn.execute(q).mappings().first()
    return dict(r) if r else None


def _number(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v) if math.isfinite(v) else None


def _same(a: Any, b: Any) -> bool:
    x, y = _number(a), _number(b)
    if x is not None and y is not None:
        return math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-12)
    return a == b


def _anchors(owner: CheckConfig, trs: list, rows: list[dict], start: float, until: float
             ) -> dict[int, tuple[float, Any]]:
    """minute -> (time, value): when a logged evaluation says the value was v at time t,
    the sample that brought v came in at t - `for:` — or, if the history shows v first
    later than that, at the start of that minute — never after t."""
    by_minute = {r["minute"]: r for r in rows}
    out: dict[int, tuple[float, Any]] = {}
    for tr in trs:
        if tr.reason != "evaluation" or tr.check_id != owner.id or tr.value is None:
            continue
        if (tr.message or "").startswith(DISCONNECTED) or not start <= tr.time <= until:
            continue
        earliest = tr.time - owner.for_
        for minute in range(int(earliest // 60), int(tr.time // 60) + 1):
            r = by_minute.get(minute)
            if r is None or not _has(r, tr.value):
                continue
            if minute not in out:
                out[minute] = (min(max(earliest, minute * 60.0), tr.time), tr.value)
            break
    return out


def _has(row: dict, value: Any) -> bool:
    if _same(row["vlast"], value):
        return True
    x, lo, hi = _number(value), _number(row.get("vmin")), _number(row.get("vmax"))
    return x is not None and lo is not None and hi is not None and (
        _same(x, lo) or _same(x, hi))


def _times(values: list, lo: float, hi: float, anchor: tuple[float, Any] | None,
           count: int = 1) -> list[float]:
    """When each of a minute's samples came. The minute had `count` updates, evenly
    spaced; ours take consecutive ones of those slots, in the middle of [lo, hi) — or
    around the anchor: its value at its time, the others in the slots next to it."""
    n = len(values)
    d = (hi - lo) / max(count, n)
    if anchor is not None:
        at, value = anchor
        k = next((i for i, v in enumerate(values) if _same(v, value)), None)
        if k is not None and lo <= at < hi:
            return [min(max(at + (i - k) * d, lo), hi - 1e-3) for i in range(n)]
    first = lo + ((hi - lo) - n * d) / 2 + d / 2
    return [first + i * d for i in range(n)]


def _fill(samples: list[tuple[float, Any]], prev: Any, lo: float, hi: float, need: int
          ) -> list[tuple[float, Any]]:
    """Add repeats of the value in force on an even grid of `need` points in [lo, hi)
    (where no sample is near already), so the gaps between updates are those of the
    live PV — for `stale:`."""
    step = (hi - lo) / max(need, 1)
    out = list(samples)
    for j in range(need):
        at = lo + step * (j + 0.5)
        if any(abs(when - at) < step / 2 for when, _ in samples):
            continue
        value = prev
        for when, v in samples:
            if when <= at:
                value = v
        if value is not None:
            out.append((at, value))
    out.sort(key=lambda x: x[0])
    return out


def _path(prev: Any, row: dict) -> list:
    """The minute's samples: prev -> nearer extreme -> farther extreme -> last, without
    repeats (a minute with one update, or a non-number, is just its last value)."""
    last, lo, hi = row["vlast"], _number(row.get("vmin")), _number(row.get("vmax"))
    count = int(row.get("count") or 1)
    x = _number(last)
    if count <= 1 or x is None or lo is None or hi is None or lo == hi:
        return [last]
    p = _number(prev)
    p = x if p is None else p
    up = abs(p - lo) + abs(hi - x)  # prev -> min -> max -> last
    down = abs(p - hi) + abs(lo - x)  # prev -> max -> min -> last
    order = [lo, hi] if up <= down else [hi, lo]
    out: list = []
    for v in [*order, last]:
        if not out or _number(out[-1]) != _number(v):
            out.append(v)
    if count == 2 and len(out) > 2:  # two updates: the extreme that is not the last, then it
        out = out[-2:]
    return out


def _disconnections(trs: list, rows: list[dict], grace: float, until: float
                    ) -> list[tuple[float, float | None]]:
    """(lost, back) from transitions saying "disconnected"/"no value"; back at the first
    history row after it, or the next other transition, whichever is first."""
    minutes = [r["minute"] for r in rows]
    out: list[tuple[float, float | None]] = []
    down: float | None = None
    for tr in trs:
        if tr.reason == "ack":
            continue
        lost = (tr.message or "").startswith(DISCONNECTED) and tr.current > Severity.OK
        if lost and down is None:
            down = tr.time - grace
            if out and out[-1][1] is not None and down < out[-1][1]:
                down = out[-1][1]
        elif not lost and down is not None:
            out.append((down, _back(down, tr.time, minutes)))
            down = None
    if down is not None:
        back = _back(down, None, minutes)
        out.append((down, back if back is not None and back <= until else None))
    return out


def _back(down: float, recovered: float | None, minutes: list[int]) -> float | None:
    k = bisect_right(minutes, int(down // 60))
    first_row = minutes[k] * 60.0 if k < len(minutes) else None
    candidates = [x for x in (first_row, recovered) if x is not None]
    return min(candidates) if candidates else None


def _connected_span(m0: float, m1: float, downs: list[tuple[float, float | None]]
                    ) -> tuple[float, float]:
    """The part of [m0, m1) where the PV was connected, so samples are not put into a
    disconnection: after a reconnection in the minute, before a disconnection in it."""
    lo, hi = m0, m1
    for d, u in downs:
        if u is not None and m0 <= u < m1 and d < m1:
            lo = max(lo, u)
        if m0 <= d < m1 and d >= lo:
            hi = min(hi, d)
    if hi <= lo:
        return lo, lo + 1e-3
    return lo, hi


def _uses_epics(c: CheckConfig) -> bool:
    if c.epics_severity is not None:
        return c.epics_severity
    return not (c.above or c.below or c.when)


def _record_severities(trs: list) -> list[tuple[float, Severity]]:
    out: list[tuple[float, Severity]] = []
    for tr in trs:
        msg = tr.message or ""
        if msg.startswith("record alarm "):
            name = msg.split()[2] if len(msg.split()) > 2 else ""
            try:
                out.append((tr.time, Severity[name]))
            except KeyError:
                continue
        elif tr.reason != "ack" and tr.current == Severity.OK and out and \
                out[-1][1] != Severity.OK:
            out.append((tr.time, Severity.OK))
    return out


def _edges(window, start: float, until: float) -> Iterable[float]:
    """Openings and closings of a maintenance window in [start, until]."""
    now, seen = start, 0
    while now <= until and seen < 10_000:
        seen += 1
        occ = window.occurrence(now)
        if occ is not None:
            yield max(occ[0], start)
            if occ[1] > until:
                return
            yield occ[1]
            now = occ[1] + 1e-3
            continue
        nxt = window.next_start(now)
        if nxt is None or nxt > until:
            return
        now = max(nxt, now + 1e-3)


def _live_rows(store: Store, since: float, until: float) -> list[dict]:
    """Live notifications that went (or were due to go) out in [since, until]."""
    n = t.notifications.c
    when = or_(n.sent_at >= since, and_(n.sent_at.is_(None), n.next_attempt_at >= since))
    q = (select(t.notifications)
         .where(n.created_at <= until, when, n.kind.in_(KINDS), n.status.in_(COUNTED))
         .order_by(n.id))
    with store.engine.connect() as conn:
        return [dict(r) for r in conn.execute(q).mappings().all()]


def _count_live(store: Store, since: float, until: float, statuses: tuple[str, ...]) -> int:
    n = t.notifications.c
    q = (select(func.count()).select_from(t.notifications)
         .where(n.created_at >= since, n.created_at <= until, n.status.in_(statuses)))
    with store.engine.connect() as conn:
        return conn.execute(q).scalar_one()


def _decided(rows: list[dict], since: float, until: float) -> list[Notice]:
    """Notifications sent (or due) in [since, until]. A repeat or escalation still
    pending is not counted: the worker decides when it is due whether it goes."""
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


# --- running the config ------------------------------------------------------------------------


class _DryNotifier:
    """Says "sent" and sends nothing."""

    kind = "replay"

    def __init__(self, name: str):
        self.name = self.destination = name

    async def send(self, message) -> Delivery:
        return Delivery.sent(detail="replay: not sent")

    async def aclose(self) -> None:
        pass


class _DryRegistry:
    """The worker's registry in a replay: the real one's destinations, dry."""

    def __init__(self, real):
        self.real = real

    def get(self, name: str, default=None):
        return _DryNotifier(name) if name in self.real else default

    def person(self, name: str) -> list[_DryNotifier]:
        return [_DryNotifier(n.name) for n in self.real.person(name)]

    async def aclose(self) -> None:
        await self.real.aclose()


@contextmanager
def _app_with(config: Config):
    """An App factory that runs this (changed) config instead of reading the file."""
    from ..app import App

    yield lambda path, clock, sources: App(path, clock, sources, config=config)


class _Run:
    def __init__(self, plan: _Plan, tmp: Path, config_path: str | Path | None,
                 progress: Progress | None):
        self.plan = plan
        self.progress = progress
        self.clock = FakeClock(plan.start)
        self.samples = 0
        self.ticks = 0
        self.notes: list[str] = []
        self.app = None
        self._value: dict[str, Any] = {}
        self._severity: dict[str, Severity] = {}
        self._down: set[str] = set()
        self._due: float | None = None
        self._outbox_changed = False
        config = plan.config
        url = f"sqlite:///{tmp / 'replay.db'}"
        self.config = config.model_copy(update={"storage": config.storage.model_copy(
            update={"url": url, "password": None})})
        self.config_path = Path(config_path) if config_path else tmp / "replay.yaml"
        names = {c.source or "ca" for c in config.checks} | {"ca"}
        self.sources = {name: SoftSource(name, self.clock) for name in sorted(names)}

    async def go(self) -> None:
        with _app_with(self.config) as make:
            self.app = make(self.config_path, self.clock, self.sources)
        app = self.app
        app.registry = app.worker.registry = _DryRegistry(app.registry)
        committed = app.engine.on_committed

        def on_committed() -> None:
            self._outbox_changed = True
            if committed:
                committed()

        app.engine.on_committed = on_committed
        for rt in app.engine.runtimes.values():
            # "no value since start" only counts from the check's first data: before it
            # the log knows nothing (a check with no data at all never has an opinion)
            rt.input.started = self.plan.first.get(rt.address, float("inf"))
        await app.start()
        noise = app.engine.decider.noise
        for s in self.plan.silences:
            noise.silences.put(s)
        await self._loop()

    async def close(self) -> None:
        if self.app is not None:
            await self.app.close()

    # -- the loop -----------------------------------------------------------------------------

    async def _loop(self) -> None:
        events, plan = self.plan.events, self.plan
        total = max(plan.until - plan.start, 1.0)
        i, now, shown = 0, plan.start, plan.start
        while True:
            self.clock.t = now
            batch = []
            while i < len(events) and events[i].time <= now:
                batch.append(events[i])
                i += 1
            self._apply(batch, now)
            await self._tick(now)
            if self.progress is not None and now - shown >= 300.0:
                shown = now
                self.progress(now - plan.start, total)
            if now >= plan.until:
                break
            nxt = events[i].time if i < len(events) else plan.until
            now = min(nxt, self._wake(now), plan.until)
        if self.progress is not None:
            self.progress(total, total)

    def _apply(self, batch: list[_Event], now: float) -> None:
        engine = self.app.engine
        modes = engine.decider.noise.modes
        for ev in batch:
            if ev.kind == "value":
                self._value[ev.address] = ev.data
                self._push(ev.address, ev.data)
            elif ev.kind == "severity":
                self._severity[ev.address] = ev.data
                if ev.address in self._value and ev.address not in self._down:
                    self._push(ev.address, self._value[ev.address])
            elif ev.kind == "down":
                self._down.add(ev.address)
                self._push(ev.address, None, connected=False)
            elif ev.kind == "up":
                if ev.address in self._down and ev.address in self._value:
                    self._push(ev.address, self._value[ev.address])
                self._down.discard(ev.address)
            elif ev.kind == "ack":
                check_id, actor = ev.data
                engine.acknowledge(check_id, actor)
            elif ev.kind == "mode":
                self._mode(modes, ev.data, now)

    def _push(self, address: str, value: Any, connected: bool = True) -> None:
        if connected:
            self._down.discard(address)
        server = self.plan.servers.get(address)
        for source in self.sources.values():
            if address in source.addresses:
                source.push(address, value, connected=connected, server=server,
                            severity=self._severity.get(address, Severity.OK))
                self.samples += 1

    def _mode(self, modes, change: ModeChange, now: float) -> None:
        if change.new not in modes.names:
            self.notes.append(f"mode '{change.new}' (logged at {change.time:.0f}) is not a "
                              "mode of this config; the mode was left as it was")
            return
        modes.set_override(change.new, author="replay", reason=f"logged: {change}",
                           now=now, until=now + FAR)

    async def _tick(self, now: float) -> None:
        app = self.app
        self.ticks += 1
        app.engine.tick()
        await app.engine.flush()
        if self._outbox_changed:
            self._outbox_changed = False
            self._due = await asyncio.to_thread(app.worker.outbox.next_due)
        while self._due is not None and self._due <= now:
            while await app.worker.run_once():
                await app.worker.drain()
            self._due = await asyncio.to_thread(app.worker.outbox.next_due)
            if self._due is not None and self._due <= now:
                break  # not claimable now (cannot happen with dry notifiers); go on
        if self.ticks % 600 == 0:
            app.engine.history.take(now)  # nobody reads the replay's own history

    def _wake(self, now: float) -> float:
        """The next time something may happen without a new event."""
        engine = self.app.engine
        decider = engine.decider
        noise = decider.noise
        times = [now + IDLE]
        if self._due is not None:
            times.append(self._due)
        for rt in engine.runtimes.values():
            d = rt.logic.deadline
            if d is not None:
                times.append(d)
            inp, cfg = rt.input, rt.check.config
            if inp.sample is not None and not inp.sample.connected and \
                    inp.disconnected_since is not None:
                times.append(inp.disconnected_since + cfg.disconnect_grace)
            elif inp.sample is None:
                times.append(inp.started + cfg.disconnect_grace)
            if cfg.stale is not None and inp.last_update is not None:
                times.append(inp.last_update + cfg.stale + 1.0)
        tracker = noise.incidents
        if any(tracker.incident_of(c) is None for c in tracker.failing):
            times.append(now + 1.0)  # held or orphaned: settles within seconds
        if noise.flaps.flapping():
            times.append(now + 1.0)
        if getattr(decider, "unpaged", None):
            times.append(now + UNPAGED_EVERY)
        times += _decider_due(decider, now)
        later = [x for x in times if x > now and math.isfinite(x)]
        return min(later) if later else now + IDLE


def _decider_due(decider, now: float) -> list[float]:
    """When the decider's own timers fire: its `next_due(now)` if it has one (the hook
    proposed for this)."""
    due = getattr(decider, "next_due", None)
    if callable(due):
        at = due(now)
        return [] if at is None else [at]
    return []  # resolves wait in the outbox, whose next due time `_wake` already takes
