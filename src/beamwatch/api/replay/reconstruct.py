"""Replay, part one: the stored log -> a time-ordered stream of what happened.

Only reads the live store (it may be at an older schema: replay opens it without
migrating). Everything comes from data, never from the text of a message:

* values: the per-minute history (`value_history`: min, max, last, count) of
  each check *id* becomes up to three samples in that minute, in the order that
  makes the smoothest path from the previous minute's last value (prev ->
  nearer extreme -> farther extreme -> last). The minute had `count` evenly
  spaced updates; ours take consecutive ones of those slots in the middle of the
  connected part of the minute (an extreme lasts one update, as it did). Where a
  logged evaluation says "the value was v at t", the sample bringing v is put at
  t - `for:` (not before its minute, not after t) and the others next to it. A
  check with `stale:` also gets repeats of the value in force, as many as the
  minute's updates allow, so its gaps are the live ones. A minute with no row had
  no update (Channel Access posts on change): the value stays.
* connections: each minute row says whether the PV was connected at the end of
  the minute, when it was first lost and last back in it (`connected`,
  `lost_at`, `back_at`, since migration 0004). Several losses in one minute
  become one.
* the record's own EPICS severity: each minute row has the worst in the minute,
  when it was first reached and the last (`record_severity*`, since 0004); the
  worst is applied at its time, the last with the minute's last sample.
* rows written before 0004 have none of that: there the PV counts as connected
  and its record severity stays as last known; the stream's notes say so.
* the IOC serving a PV (for dead-IOC incidents): its latest value's `server`.
* acknowledgements in the log come at their time, the logged mode changes as
  they happened, and the silences stored for the period as they were;
  maintenance windows of the config add wake-ups at their edges.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import inspect, select

from ...config.schema import CheckConfig, Config
from ...engine.noise import maintenance_windows
from ...model import Severity
from ...model.modes import ModeChange
from ...store import Store
from ...store import tables as t
from ...store.noise import NoiseStore

# at one time: mode, then connection and record severity, values, acks, wake-ups
MODE, CONNECTION, VALUE, ACK, WAKE = range(5)
DATA_COLUMNS = ("connected", "lost_at", "back_at", "record_severity", "record_severity_at",
                "record_severity_last")  # added by migration 0004


@dataclass(order=True)
class Event:
    time: float
    order: int  # MODE .. WAKE: what goes first at one time
    seq: int
    kind: str = field(compare=False)  # value, severity, down, up, ack, mode, wake
    address: str = field(compare=False, default="")
    data: Any = field(compare=False, default=None)


@dataclass
class Stream:
    """Everything read from the live store, as a time-ordered list of events."""

    config: Config
    since: float
    until: float
    start: float  # since - warmup, on a whole minute
    events: list[Event] = field(default_factory=list)
    silences: list = field(default_factory=list)
    no_data: list[str] = field(default_factory=list)
    replayed: list[str] = field(default_factory=list)
    not_in_config: list[str] = field(default_factory=list)
    servers: dict[str, str | None] = field(default_factory=dict)  # address -> IOC
    first: dict[str, float] = field(default_factory=dict)  # address -> its first event
    transitions_in_window: int = 0
    history_in_window: int = 0  # value_history rows in [since, until]
    without_data: list[str] = field(default_factory=list)  # checks with rows before 0004
    notes: list[str] = field(default_factory=list)
    _seq: int = 0

    def add(self, time: float, order: int, kind: str, address: str = "", data: Any = None
            ) -> None:
        self._seq += 1
        self.events.append(Event(time, order, self._seq, kind, address, data))


def reconstruct(config: Config, store: Store, since: float, until: float,
                warmup: float) -> Stream:
    """The stream of [since - warmup, until] for the checks of `config`."""
    start = math.floor((since - max(0.0, warmup)) / 60.0) * 60.0  # whole minutes
    stream = Stream(config, since, until, start)
    history = _History(store, start, until)
    logged = store.transitions(until=until)
    by_check: dict[str, list] = {}
    for lt in logged:
        by_check.setdefault(lt.transition.check_id, []).append(lt.transition)
    ids = set(config.check_ids)
    in_window = [tr for trs in by_check.values() for tr in trs if since <= tr.time <= until]
    stream.transitions_in_window = sum(tr.reason != "ack" for tr in in_window)
    stream.not_in_config = sorted({tr.check_id for tr in in_window} - ids)
    latest = store.latest()
    # one feed per address: checks sharing a PV share its samples
    feeds: dict[tuple[str, str], list[CheckConfig]] = {}
    for c in config.checks:
        if c.internal is None:  # beamwatch's own health is not a log to replay
            feeds.setdefault((c.source or "ca", c.pv or ""), []).append(c)
    for (_source, address), checks in feeds.items():
        _Feed(stream, history, address, checks, by_check, latest).read()
    for tr in (tr for trs in by_check.values() for tr in trs):
        if tr.reason == "ack" and tr.check_id in ids and start <= tr.time <= until:
            stream.add(tr.time, ACK, "ack", data=(tr.check_id, tr.actor or "someone"))
    _modes(stream, store)
    _silences(stream, store)
    for w in maintenance_windows(config):
        for edge in _edges(w.window, start, until):
            stream.add(edge, WAKE, "wake")
    stream.events.sort()
    for ev in stream.events:
        if ev.address and ev.address not in stream.first:
            stream.first[ev.address] = ev.time
    stream.notes += history.notes(stream.without_data)
    return stream


class _History:
    """`value_history`, read with the columns the log has: a log not yet upgraded to
    0004 (replay does not migrate) has no connection or record severity columns."""

    def __init__(self, store: Store, start: float, until: float):
        self.store, self.start, self.until = store, start, until
        present = {c["name"] for c in inspect(store.engine).get_columns("value_history")}
        self.columns = [c for c in t.value_history.c if c.name in present]
        self.upgraded = set(DATA_COLUMNS) <= present

    def rows(self, check_id: str) -> list[dict]:
        h = t.value_history.c
        q = (select(*self.columns).where(h.check_id == check_id)
             .where(h.minute >= int(self.start // 60), h.minute <= int(self.until // 60))
             .order_by(h.minute))
        with self.store.engine.connect() as conn:
            return [dict(r) for r in conn.execute(q).mappings().all()]

    def last_before(self, check_id: str) -> dict | None:
        h = t.value_history.c
        q = (select(*self.columns).where(h.check_id == check_id,
                                         h.minute < int(self.start // 60))
             .order_by(h.minute.desc()).limit(1))
        with self.store.engine.connect() as conn:
            r = conn.execute(q).mappings().first()
        return dict(r) if r else None

    def last_value_before(self, check_id: str, before: dict | None) -> dict | None:
        """The last row before the start that brought a value: `before` itself unless
        the PV was away all its minute."""
        if before is None or before.get("count"):
            return before
        h = t.value_history.c
        q = (select(*self.columns).where(h.check_id == check_id, h.count > 0,
                                         h.minute < before["minute"])
             .order_by(h.minute.desc()).limit(1))
        with self.store.engine.connect() as conn:
            r = conn.execute(q).mappings().first()
        return dict(r) if r else None

    def notes(self, without_data: list[str]) -> list[str]:
        if not self.upgraded:
            return ["the log predates schema 0004 (it is upgraded when `beamwatch run` next "
                    "starts on it): it has no connection or record severity data, so no "
                    "disconnection and no record alarm is replayed; PVs count as connected "
                    "and their record severity as NO_ALARM"]
        if not without_data:
            return []
        return [f"history written before schema 0004 (no connection or record severity "
                f"data) for: {', '.join(sorted(without_data))}; in those minutes the PV "
                "counts as connected and its record severity as last known (NO_ALARM if "
                "never), so a disconnection or a record alarm then is not replayed"]


def has_data(row: dict) -> bool:
    """Whether a history row records the connection and record severity (since 0004)."""
    return row.get("connected") is not None


class _Feed:
    """One address's samples: values, connection, record severity."""

    def __init__(self, stream: Stream, history: _History, address: str,
                 checks: list[CheckConfig], by_check: dict[str, list], latest: dict):
        self.stream, self.history, self.address = stream, history, address
        self.checks, self.by_check, self.latest = checks, by_check, latest

    def read(self) -> None:
        stream, address, checks = self.stream, self.address, self.checks
        start, until = stream.start, stream.until
        owner, rows, before = self._owner()
        if owner is None:
            stream.no_data += [c.id for c in checks]
            return
        stream.replayed += [c.id for c in checks]
        rows = [r for r in rows if r["minute"] * 60 >= start]
        stream.history_in_window += sum(stream.since <= r["minute"] * 60 + 59 for r in rows)
        if any(not has_data(r) for r in rows):
            stream.without_data.append(owner.id)
        trs = sorted((tr for c in checks for tr in self.by_check.get(c.id, ())),
                     key=lambda tr: tr.time)
        lv = self.latest.get(owner.id)
        stream.servers[address] = lv.server if lv is not None else None
        downs = _outages(before, rows)
        held = self.history.last_value_before(owner.id, before)
        if held is not None:  # first at `start`: before a disconnection going on then
            stream.add(start, CONNECTION, "value", address, held["vlast"])
        severity = _known_severity(before)
        if severity is not None:
            stream.add(start, CONNECTION, "severity", address, severity)
        for d, u in downs:
            if u is not None and u <= start:
                continue
            stream.add(max(d, start), CONNECTION, "down", address)
            if u is not None:
                stream.add(u, CONNECTION, "up", address)
        stale = min((c.stale for c in checks if c.stale), default=None)
        anchors = _anchors(owner, trs, rows, start, until)
        prev = held["vlast"] if held is not None else None
        for r in rows:
            if not r.get("count"):  # lost all the minute: no value came
                continue
            m0 = r["minute"] * 60.0
            lo, hi = _connected_span(m0, m0 + 60.0, downs)
            path = _path(prev, r)
            count = max(int(r.get("count") or 1), 1)
            times = _times(path, lo, hi, anchors.get(r["minute"]), count)
            samples = list(zip(times, path, strict=True))
            if stale:  # as many updates as the minute had, up to what keeps it fresh
                samples = _fill(samples, prev, lo, hi, min(count, int(60.0 / stale) + 1))
            for when, v in samples:
                stream.add(when, VALUE, "value", address, v)
            severity = self._record_severity(r, severity, samples[-1][0], hi)
            prev = r["vlast"]

    def _owner(self) -> tuple[CheckConfig | None, list[dict], dict | None]:
        """The first check of this PV that has history speaks for it."""
        for c in self.checks:
            rows = self.history.rows(c.id)
            before = self.history.last_before(c.id)
            if rows or before is not None or any(
                    tr.time >= self.stream.start for tr in self.by_check.get(c.id, ())):
                return c, rows, before
        return None, [], None

    def _record_severity(self, row: dict, now: Severity | None, last_sample: float,
                         hi: float) -> Severity | None:
        """The minute's worst record severity at its time, its last with the minute's
        last sample (or halfway to the minute's end if that came first)."""
        if not has_data(row) or row.get("record_severity") is None:
            return now
        worst = Severity(row["record_severity"])
        at = row.get("record_severity_at") or row["minute"] * 60.0
        last_level = row.get("record_severity_last")
        last = worst if last_level is None else Severity(last_level)
        if worst != (now or Severity.OK):
            self.stream.add(at, CONNECTION, "severity", self.address, worst)
        if last != worst:
            then = last_sample if last_sample > at else (at + max(hi, at)) / 2
            self.stream.add(then, CONNECTION, "severity", self.address, last)
        return last


def _known_severity(row: dict | None) -> Severity | None:
    if row is None or not has_data(row) or row.get("record_severity_last") is None:
        return None
    return Severity(row["record_severity_last"])


def _outages(before: dict | None, rows: list[dict]) -> list[tuple[float, float | None]]:
    """(lost, back) from the rows' connection data; back None: still away at the end.
    A row without the data (before 0004) counts as connected all the minute."""
    up = before is None or not has_data(before) or bool(before["connected"])
    down: float | None = None
    if not up and before is not None:
        down = before.get("lost_at") or before["minute"] * 60.0
    out: list[tuple[float, float | None]] = []
    for r in rows:
        if has_data(r):
            edges, end_up = _minute_edges(up, r), bool(r["connected"])
        else:
            edges, end_up = ([] if up else [(r["minute"] * 60.0, True)]), True
        for at, connected in edges:
            if not connected and down is None:
                down = at
            elif connected and down is not None:
                out.append((down, at))
                down = None
        up = end_up
    if down is not None:
        out.append((down, None))
    return out


def _minute_edges(up: bool, row: dict) -> list[tuple[float, bool]]:
    """A minute's connection changes from its first loss, last return and end state,
    given the state it began in. Any single change, or a loss and a return, come out
    exact; more changes in one minute become one outage."""
    m0 = row["minute"] * 60.0
    lost, back, up_at_end = row.get("lost_at"), row.get("back_at"), bool(row["connected"])
    if up and up_at_end:
        return [(lost, False), (back, True)] if lost is not None and back is not None else []
    if up:  # lost in it, for good
        return [(m0 if lost is None else lost, False)]
    if up_at_end:  # back in it
        return [(m0 if back is None else back, True)]
    if lost is not None and back is not None and back < lost:  # back, then lost again
        return [(back, True), (lost, False)]
    return []


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
    later than that, at the start of that minute — never after t. Evaluations without
    a value (disconnected, no value, stale) pin nothing."""
    by_minute = {r["minute"]: r for r in rows}
    out: dict[int, tuple[float, Any]] = {}
    for tr in trs:
        if tr.reason != "evaluation" or tr.check_id != owner.id or tr.value is None:
            continue
        if not start <= tr.time <= until:
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


def _modes(stream: Stream, store: Store) -> None:
    changes = NoiseStore(store).mode_changes()
    before = [c for c in changes if c.time < stream.start]
    during = [c for c in changes if stream.start <= c.time <= stream.until]
    if before:
        stream.add(stream.start, MODE, "mode", data=before[-1])
    elif during:
        first = during[0]
        stream.add(stream.start, MODE, "mode", data=ModeChange(
            stream.start, first.old, first.old, first.source, None, "before"))
    for c in during:
        stream.add(c.time, MODE, "mode", data=c)


def _silences(stream: Stream, store: Store) -> None:
    stream.silences = [s for s in NoiseStore(store).silences(since=stream.start)
                       if s.start <= stream.until]
    for s in stream.silences:
        for edge in (s.start, s.end):
            if stream.start < edge <= stream.until:
                stream.add(edge, WAKE, "wake")


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
