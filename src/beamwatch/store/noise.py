"""Noise control, durable: silences, mode overrides, the mode change log, incidents.

`NoiseStore(store)` is a thin layer over the store's engine and the tables
at the end of `store/tables.py` (migration 0002). Rows come back as the pure
dataclasses of `engine/silences.py`, `engine/modes.py` and
`engine/incidents.py`, so the engine feeds them straight to `SilenceMuter`,
`ModeTracker` and `IncidentTracker`.

Who writes what
---------------
- Front ends (CLI, web, Slack bot, through `api/noise.py`) add and expire
  silences and set and clear mode overrides. They write nothing else.
- The running engine polls, once per tick, ONE query each:
  `silences(since=now - keep)` (every silence not ended before `since`:
  active, starting later, or ended recently — mirror them into the muter
  with `put`) and `active_override(now)` (give it to the ModeTracker when it
  differs from the tracker's; clear the tracker's when it is None).
- The engine alone appends the mode change log (`log_mode_changes`, the
  records ModeTracker returns) and saves incident snapshots
  (`save_incidents`, from the events IncidentTracker returns); at start-up it
  gives `open_incidents()` to `IncidentTracker.restore`.

Every method is one short transaction; the poll and the engine writes are one
statement each. Times are epoch seconds (float), as everywhere in the store.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

from sqlalchemy import and_, case, delete, insert, or_, select, update
from sqlalchemy.engine import Connection, RowMapping

from ..model import Severity
from ..model.decision import Decision
from ..model.incident import Incident, IncidentKind
from ..model.modes import ModeChange, ModeSource, Override
from ..model.silence import Matcher, Silence, matchers
from . import tables as t
from .store import Store


@dataclass(frozen=True, slots=True)
class OverrideRecord:
    """A mode override as stored: the pure `Override` plus how it ended early,
    if it did (cleared by someone, or replaced by a newer override)."""

    id: int
    override: Override
    cleared_at: float | None = None
    cleared_by: str | None = None

    @property
    def end(self) -> float:
        """When it stopped (or stops) being in force."""
        if self.cleared_at is None:
            return self.override.until
        return min(self.override.until, self.cleared_at)

    def active(self, now: float) -> bool:
        return self.override.start <= now < self.end


class NoiseStore:
    """Silences, mode overrides, mode changes and incidents in the store's database."""

    def __init__(self, store: Store):
        self.store = store
        self.engine = store.engine

    # -- silences ---------------------------------------------------------------------------

    def add_silence(self, matcher_list: Iterable[str | Matcher], *, start: float, end: float,
                    author: str, reason: str, now: float,
                    remind_before: float | None = None) -> Silence:
        """Store a new silence; returns it with its id (digits, never reused).

        Validated by `Silence` first (author, reason, end after start, not a
        match-everything silence): a SilenceError leaves the store untouched.
        """
        draft = Silence("new", matchers(matcher_list), start, end, author.strip(),
                        reason.strip(), remind_before)
        with self.engine.begin() as conn:
            pk = conn.execute(insert(t.silences).values(
                matchers=[_matcher_json(m) for m in draft.matchers], starts=draft.start,
                ends=draft.end, author=draft.author, reason=draft.reason, created=now,
                remind_before=remind_before,
            )).inserted_primary_key[0]
        return replace(draft, id=str(pk))

    def silence(self, silence_id: str | int) -> Silence | None:
        """One silence by id, or None (also for an id that is not a number)."""
        pk = _pk(silence_id)
        if pk is None:
            return None
        with self.engine.connect() as conn:
            r = conn.execute(select(t.silences).where(t.silences.c.id == pk)).mappings().first()
        return _silence(r) if r else None

    def silences(self, since: float | None = None) -> list[Silence]:
        """Silences not ended before `since` (end > since): with since=now, those
        active or starting later; with since=now-86400, also those that ended
        in the last day; None: all. Oldest first. One query (index on ends)."""
        q = select(t.silences).order_by(t.silences.c.starts, t.silences.c.id)
        if since is not None:
            q = q.where(t.silences.c.ends > since)
        with self.engine.connect() as conn:
            return [_silence(r) for r in conn.execute(q).mappings()]

    def active_silences(self, now: float) -> list[Silence]:
        """Silences in force at `now` (start <= now < end)."""
        q = (select(t.silences).where(t.silences.c.ends > now, t.silences.c.starts <= now)
             .order_by(t.silences.c.starts, t.silences.c.id))
        with self.engine.connect() as conn:
            return [_silence(r) for r in conn.execute(q).mappings()]

    def expire_silence(self, silence_id: str | int, by: str, now: float) -> Silence:
        """End a silence now, as `SilenceMuter.expire` does: its end becomes
        max(now, start) and `expired_by` is set. One that has already ended is
        returned unchanged. KeyError: no such silence."""
        pk = _pk(silence_id)
        with self.engine.begin() as conn:
            if pk is not None:
                conn.execute(
                    update(t.silences).where(t.silences.c.id == pk, t.silences.c.ends > now)
                    .values(ends=_greatest(now, t.silences.c.starts), expired_by=by,
                            expired_at=now))
                r = conn.execute(select(t.silences).where(t.silences.c.id == pk)
                                 ).mappings().first()
            else:
                r = None
        if r is None:
            raise KeyError(silence_id)
        return _silence(r)

    # -- mode overrides -------------------------------------------------------------------

    def set_override(self, mode: str, *, author: str, reason: str, until: float,
                     now: float) -> Override:
        """Force `mode` from now until `until`. Any override in force is ended
        (cleared_at=now, cleared_by=author): there is one override at a time.
        The mode name is not checked here (the service checks it against the config)."""
        author, reason = author.strip(), reason.strip()
        if not author or not reason:
            raise ValueError("a mode override needs an author and a reason")
        if not until > now:
            raise ValueError("a mode override must end in the future")
        c = t.mode_overrides.c
        with self.engine.begin() as conn:
            conn.execute(update(t.mode_overrides)
                         .where(c.cleared_at.is_(None), c.until > now)
                         .values(cleared_at=now, cleared_by=author))
            conn.execute(insert(t.mode_overrides).values(
                mode=mode, author=author, reason=reason, starts=now, until=until))
        return Override(mode, author, reason, now, until)

    def clear_override(self, author: str, now: float) -> Override | None:
        """End the override in force, if any; returns it (None: there was none)."""
        c = t.mode_overrides.c
        live = and_(c.cleared_at.is_(None), c.starts <= now, c.until > now)
        with self.engine.begin() as conn:
            rows = conn.execute(select(t.mode_overrides).where(live)
                                .order_by(c.starts.desc(), c.id.desc())).mappings().all()
            if not rows:
                return None
            conn.execute(update(t.mode_overrides).where(c.id.in_([r["id"] for r in rows]))
                         .values(cleared_at=now, cleared_by=author))
        return _override(rows[0]).override

    def active_override(self, now: float) -> Override | None:
        """The override in force at `now`, or None. One query (the engine's poll)."""
        c = t.mode_overrides.c
        q = (select(t.mode_overrides)
             .where(c.cleared_at.is_(None), c.starts <= now, c.until > now)
             .order_by(c.starts.desc(), c.id.desc()).limit(1))
        with self.engine.connect() as conn:
            r = conn.execute(q).mappings().first()
        return _override(r).override if r else None

    def overrides(self, limit: int | None = 20) -> list[OverrideRecord]:
        """The most recent overrides, newest first, with how they ended."""
        c = t.mode_overrides.c
        q = select(t.mode_overrides).order_by(c.starts.desc(), c.id.desc())
        if limit is not None:
            q = q.limit(limit)
        with self.engine.connect() as conn:
            return [_override(r) for r in conn.execute(q).mappings()]

    # -- the mode change log ---------------------------------------------------------------

    def log_mode_changes(self, changes: Iterable[ModeChange],
                         conn: Connection | None = None) -> int:
        """Append ModeChange records (ModeProblems and other records are skipped);
        returns how many were written. One statement; inside `conn`'s transaction if
        given (the engine stores them with the decision they belong to)."""
        rows = [{"time": ch.time, "old": ch.old, "new": ch.new, "source": str(ch.source),
                 "author": ch.author, "reason": ch.reason or ""}
                for ch in changes if isinstance(ch, ModeChange)]
        if rows and conn is not None:
            conn.execute(insert(t.mode_changes), rows)
        elif rows:
            with self.engine.begin() as c:
                c.execute(insert(t.mode_changes), rows)
        return len(rows)

    def keep(self, decision: Decision, now: float, conn: Connection) -> None:
        """What the engine decided besides transitions and rows: incident snapshots and
        mode changes, in the transaction of the batch they belong to."""
        if decision.incidents:
            self.save_incidents(decision.incidents, now, conn)
        if decision.mode_changes:
            self.log_mode_changes(decision.mode_changes, conn)

    def mode_changes(self, since: float | None = None,
                     limit: int | None = None) -> list[ModeChange]:
        """Logged changes at or after `since`, oldest first (with `limit`: the
        most recent `limit` of them, still oldest first)."""
        c = t.mode_changes.c
        q = select(t.mode_changes).order_by(c.time.desc(), c.id.desc())
        if since is not None:
            q = q.where(c.time >= since)
        if limit is not None:
            q = q.limit(limit)
        with self.engine.connect() as conn:
            rows = conn.execute(q).mappings().all()
        return [_mode_change(r) for r in reversed(rows)]

    def last_mode_change(self, settled_after: float | None = None) -> ModeChange | None:
        """The latest logged change. With `settled_after`: ignoring changes made
        by overrides before that time — i.e. the change that put in force an
        override which has since ended, so that what remains is the mode the
        engine last derived from the PV, the schedule or the default."""
        c = t.mode_changes.c
        q = select(t.mode_changes).order_by(c.time.desc(), c.id.desc()).limit(1)
        if settled_after is not None:
            q = q.where(or_(c.source != str(ModeSource.OVERRIDE), c.time >= settled_after))
        with self.engine.connect() as conn:
            r = conn.execute(q).mappings().first()
        return _mode_change(r) if r else None

    # -- incidents --------------------------------------------------------------------------

    def save_incidents(self, incidents: Iterable[Incident], now: float,
                       conn: Connection | None = None) -> int:
        """Insert or update incident snapshots by id (the last one of an id wins);
        returns how many were written. One statement; inside `conn`'s transaction if
        given (the engine stores incidents with the transitions that changed them)."""
        rows: dict[str, dict] = {}
        for inc in incidents:
            rows[inc.id] = {
                "id": inc.id, "kind": str(inc.kind), "root": inc.root, "opened": inc.opened,
                "severity": int(inc.severity), "consequences": list(inc.consequences),
                "failing": list(inc.failing), "resolved": inc.resolved, "server": inc.server,
                "disconnected": list(inc.disconnected), "promoted_from": inc.promoted_from,
                "updated": now,
            }
        if rows and conn is not None:
            self.store._upsert(conn, t.incidents, list(rows.values()), ["id"])
        elif rows:
            with self.engine.begin() as c:
                self.store._upsert(c, t.incidents, list(rows.values()), ["id"])
        return len(rows)

    def save_incident(self, incident: Incident, now: float) -> None:
        self.save_incidents([incident], now)

    def incident(self, incident_id: str) -> Incident | None:
        with self.engine.connect() as conn:
            r = conn.execute(select(t.incidents).where(t.incidents.c.id == incident_id)
                             ).mappings().first()
        return _incident(r) if r else None

    def open_incidents(self) -> list[Incident]:
        """Incidents not resolved, oldest first: what `IncidentTracker.restore` takes."""
        c = t.incidents.c
        q = select(t.incidents).where(c.resolved.is_(None)).order_by(c.opened, c.id)
        with self.engine.connect() as conn:
            return [_incident(r) for r in conn.execute(q).mappings()]

    def incidents(self, since: float, until: float | None = None) -> list[Incident]:
        """Incidents open at any time in [since, until]: still open, or resolved
        at or after `since` (and, with `until`, opened by then). Oldest first."""
        c = t.incidents.c
        q = (select(t.incidents).where(or_(c.resolved.is_(None), c.resolved >= since))
             .order_by(c.opened, c.id))
        if until is not None:
            q = q.where(c.opened <= until)
        with self.engine.connect() as conn:
            return [_incident(r) for r in conn.execute(q).mappings()]

    # -- retention ----------------------------------------------------------------------------

    def purge(self, before: float) -> dict[str, int]:
        """Delete what ended before `before`: silences, overrides, mode changes,
        resolved incidents. Anything still in force stays."""
        o = t.mode_overrides.c
        with self.engine.begin() as conn:
            return {
                "silences": conn.execute(
                    delete(t.silences).where(t.silences.c.ends < before)).rowcount,
                "mode_overrides": conn.execute(
                    delete(t.mode_overrides).where(or_(o.until < before, o.cleared_at < before))
                ).rowcount,
                "mode_changes": conn.execute(
                    delete(t.mode_changes).where(t.mode_changes.c.time < before)).rowcount,
                "incidents": conn.execute(
                    delete(t.incidents).where(t.incidents.c.resolved < before)).rowcount,
            }


# --- rows <-> dataclasses -------------------------------------------------------------------


def _pk(silence_id: str | int) -> int | None:
    text = str(silence_id).strip().lstrip("#")
    return int(text) if text.isdigit() else None


def _greatest(now: float, column):
    """max(now, column) in SQL, on SQLite and PostgreSQL alike."""
    return case((column > now, column), else_=now)


def _matcher_json(m: Matcher) -> dict:
    return {"name": m.name, "op": m.op, "value": m.value}


def _silence(r: RowMapping) -> Silence:
    return Silence(
        id=str(r["id"]),
        matchers=tuple(Matcher(m["name"], m["value"], m["op"]) for m in r["matchers"]),
        start=r["starts"], end=r["ends"], author=r["author"], reason=r["reason"],
        remind_before=r["remind_before"], expired_by=r["expired_by"],
    )


def _override(r: RowMapping) -> OverrideRecord:
    return OverrideRecord(
        r["id"], Override(r["mode"], r["author"], r["reason"], r["starts"], r["until"]),
        r["cleared_at"], r["cleared_by"],
    )


def _mode_change(r: RowMapping) -> ModeChange:
    try:
        source = ModeSource(r["source"])
    except ValueError:  # a source written by a newer version: keep the text
        source = r["source"]
    return ModeChange(r["time"], r["old"], r["new"], source, r["author"], r["reason"] or "")


def _incident(r: RowMapping) -> Incident:
    return Incident(
        id=r["id"], kind=IncidentKind(r["kind"]), root=r["root"], opened=r["opened"],
        severity=Severity(r["severity"]), consequences=tuple(r["consequences"] or ()),
        failing=tuple(r["failing"] or ()), resolved=r["resolved"], server=r["server"],
        disconnected=tuple(r["disconnected"] or ()), promoted_from=r["promoted_from"],
    )
