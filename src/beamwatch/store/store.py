"""The beamline log: one small, synchronous API over SQLAlchemy.

The engine calls it from one writer thread (see `engine.writer`), so the
asyncio loop never waits on the disk. SQLite is the default (WAL, so the CLI
can read while `run` writes); a postgresql+psycopg URL works the same way.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import String, create_engine, delete, event, func, insert, select, text, update
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import DBAPIError

from ..model import AlarmState, Severity, Transition, json_value
from . import tables as t
from .errors import StoreMismatch
from .migrate import upgrade

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class LatestValue:
    check_id: str
    time: float
    value: Any
    severity: Severity
    connected: bool
    server: str | None
    message: str | None


@dataclass(frozen=True, slots=True)
class LoggedTransition:
    id: int
    transition: Transition


@dataclass(frozen=True, slots=True)
class Command:
    id: int
    time: float
    verb: str
    args: dict
    actor: str
    status: str
    result: str | None


def make_engine(url: str, busy_timeout: float = 30.0, schema: str | None = None) -> Engine:
    """`schema` (PostgreSQL): the beamline's own schema, first and only on the search
    path, so every table, raw SQL and Alembic's alembic_version live in it."""
    if url.startswith("sqlite"):
        path = url.split(":///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        eng = create_engine(url, connect_args={"timeout": busy_timeout,
                                               "check_same_thread": False})

        @event.listens_for(eng, "connect")
        def _pragmas(dbapi_conn, _record):  # WAL: readers never block the writer
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
            cur.close()

        return eng
    if schema is None:
        return create_engine(url, pool_pre_ping=True)
    # libpq's startup option: set on every connection before anything runs, so no
    # transaction can roll it back and no pooled connection can miss it
    eng = create_engine(url, pool_pre_ping=True,
                        connect_args={"options": f"-c search_path={schema}"})
    _create_schema(eng, schema)
    return eng


def _create_schema(eng: Engine, schema: str) -> None:
    """CREATE SCHEMA IF NOT EXISTS, which two processes starting at once can race on:
    the loser finds the schema there and goes on."""
    try:
        with eng.begin() as conn:
            if _schema_is_new(conn, schema) and _store_in_public(conn) and schema != "public":
                log.warning("a beamwatch store exists in schema public, but this beamline's "
                            "is schema %s (created empty now): to keep using the old one, "
                            "set storage.schema: public", schema)
            conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
    except DBAPIError:
        with eng.connect() as conn:
            found = conn.execute(text("SELECT 1 FROM pg_namespace WHERE nspname = :s"),
                                 {"s": schema}).first()
        if found is None:
            raise


def _schema_is_new(conn: Connection, schema: str) -> bool:
    return conn.execute(text("SELECT 1 FROM pg_namespace WHERE nspname = :s"),
                        {"s": schema}).first() is None


def _store_in_public(conn: Connection) -> bool:
    """A store from before schemas per beamline (beamwatch 0.1 used `public`)."""
    return conn.execute(text("SELECT to_regclass('public.alembic_version')")).scalar() is not None


class Store:
    def __init__(self, url: str, migrate: bool = True, busy_timeout: float = 30.0, *,
                 schema: str | None = None, beamline: str | None = None):
        """`busy_timeout`: how long a SQLite write waits for another writer's lock.
        `schema` (PostgreSQL only): the beamline's schema, created if missing.
        `beamline`: whose store this is: recorded at the first open, and any later
        open by another beamline is refused (StoreMismatch)."""
        if schema is not None and url.startswith("sqlite"):
            raise ValueError("a schema is for PostgreSQL only; SQLite has a file per beamline")
        self.url = url
        self.schema = schema
        self.engine = make_engine(url, busy_timeout, schema)
        # (conn) -> None, raising LeaseLost unless this instance leads (ha.py): called in
        # the transaction of every write only the leader may make
        self.fence: Callable[[Connection], None] | None = None
        try:
            if migrate:
                upgrade(self.engine)
            if beamline is not None:
                self._claim(beamline, write=migrate)
        except BaseException:
            self.engine.dispose()
            raise

    @classmethod
    def for_config(cls, config, migrate: bool = True) -> Store:
        """The store of a beamline's config: its URL, its schema, its beamline."""
        return cls(config.storage.url, migrate, schema=config.storage_schema,
                   beamline=config.beamline)

    def _claim(self, beamline: str, write: bool) -> None:
        """Refuse a store that another beamline wrote; claim a new one for `beamline`."""
        c = t.store_meta.c
        with self.engine.connect() as conn:
            try:
                owner = conn.execute(select(c.value).where(c.key == "beamline")).scalar()
            except DBAPIError:  # read-only open of a store older than 0007
                if write:
                    raise
                return
            if owner is None and write:  # first come: two starting at once, one wins
                self._upsert_missing(conn, t.store_meta, {"key": "beamline", "value": beamline})
                conn.commit()
                owner = conn.execute(select(c.value).where(c.key == "beamline")).scalar()
        if owner is not None and owner != beamline:
            raise StoreMismatch(self.where(), owner, beamline)

    def _upsert_missing(self, conn: Connection, table, row: dict) -> None:
        if self.dialect == "sqlite":
            from sqlalchemy.dialects.sqlite import insert as dialect_insert
        else:
            from sqlalchemy.dialects.postgresql import insert as dialect_insert
        conn.execute(dialect_insert(table).values(**row).on_conflict_do_nothing())

    def where(self) -> str:
        """The store for people: its URL without the password, and its schema."""
        try:
            shown = make_url(self.url).render_as_string(hide_password=True)
        except Exception:
            shown = "<storage url>"
        return shown + (f" schema {self.schema}" if self.schema else "")

    def beamline(self) -> str | None:
        """The beamline this store belongs to (None: not claimed yet, or before 0007)."""
        c = t.store_meta.c
        with self.engine.connect() as conn:
            return conn.execute(select(c.value).where(c.key == "beamline")).scalar()

    def close(self) -> None:
        self.engine.dispose()

    def fenced(self, conn: Connection) -> None:
        """A write only the leader of an HA pair may make: check its lease in `conn`."""
        if self.fence is not None:
            self.fence(conn)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    # -- transitions and alarm states (written together) ------------------------------

    def record(self, items: Sequence[tuple[Transition, AlarmState]],
               notifications: Iterable[dict] = (), conn: Connection | None = None,
               also: Callable[[Connection], Any] | None = None) -> list[int]:
        """Append transitions, save the states they led to, and queue the
        notifications they cause — in ONE transaction, so nothing decided is lost.
        `also(conn)` writes more of the same decision (incident snapshots) in it."""
        if conn is None:
            with self.engine.begin() as c:
                return self.record(items, notifications, c, also)
        self.fenced(conn)
        if also is not None:
            also(conn)
        ids = []
        for tr, state in items:
            ids.append(conn.execute(insert(t.transitions).values(_transition_row(tr))).inserted_primary_key[0])
            self._save_state(conn, state)
        for note in notifications:
            row = dict(note)
            index = row.pop("transition_index", None)
            if index is not None:
                row["transition_id"] = ids[index]
                row["dedup_key"] = row["dedup_key"].replace("{transition_id}", str(ids[index]))
            self._queue(conn, row)
        return ids

    def _queue(self, conn: Connection, row: dict) -> None:
        """Insert a notification unless its dedup key is already queued."""
        row["dedup_key"] = fit_key(row["dedup_key"])
        seen = conn.execute(select(t.notifications.c.id)
                            .where(t.notifications.c.dedup_key == row["dedup_key"])).first()
        if seen is None:
            row.setdefault("status", "pending")
            row.setdefault("attempts", 0)
            row.setdefault("next_attempt_at", row["created_at"])
            conn.execute(insert(t.notifications).values(**row))

    def _save_state(self, conn: Connection, s: AlarmState) -> None:
        row = {
            "severity": int(s.severity), "current": int(s.current), "acked": s.acked,
            "acked_by": s.acked_by, "acked_at": s.acked_at, "since": s.since,
            "message": s.message, "value": json_value(s.value),
            "pending": None if s.pending is None else int(s.pending),
            "pending_since": s.pending_since,
        }
        done = conn.execute(
            update(t.alarm_states).where(t.alarm_states.c.check_id == s.check_id).values(**row)
        ).rowcount
        if not done:
            conn.execute(insert(t.alarm_states).values(check_id=s.check_id, **row))

    def save_states(self, states: Iterable[AlarmState]) -> None:
        with self.engine.begin() as conn:
            for s in states:
                self._save_state(conn, s)

    def severities(self) -> dict[str, int]:
        """Each check's stored alarm severity, and nothing else (the timeline)."""
        c = t.alarm_states.c
        with self.engine.connect() as conn:
            return dict(conn.execute(select(c.check_id, c.severity)).all())

    def load_states(self) -> dict[str, AlarmState]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(t.alarm_states)).mappings().all()
        return {r["check_id"]: _state_from_row(r) for r in rows}

    def state(self, check_id: str) -> AlarmState | None:
        with self.engine.connect() as conn:
            r = conn.execute(select(t.alarm_states).where(
                t.alarm_states.c.check_id == check_id)).mappings().first()
        return _state_from_row(r) if r else None

    def last_incidents(self) -> dict[str, str]:
        """Each check's latest incident id, from the log (for acks after a restart)."""
        c = t.transitions.c
        latest = (select(c.check_id, func.max(c.id).label("id"))
                  .where(c.incident_id.is_not(None)).group_by(c.check_id).subquery())
        q = select(c.check_id, c.incident_id).join(latest, c.id == latest.c.id)
        with self.engine.connect() as conn:
            return {r[0]: r[1] for r in conn.execute(q)}

    def last_transitions(self) -> dict[str, Transition]:
        """Each check's latest transition (its mute reason and incident, for status)."""
        c = t.transitions.c
        latest = select(func.max(c.id).label("id")).group_by(c.check_id).subquery()
        q = select(t.transitions).join(latest, c.id == latest.c.id)
        with self.engine.connect() as conn:
            rows = conn.execute(q).mappings().all()
        return {r["check_id"]: _logged_from_row(r).transition for r in rows}

    def transitions(self, since: float | None = None, check_id: str | None = None,
                    limit: int | None = None, until: float | None = None) -> list[LoggedTransition]:
        q = select(t.transitions).order_by(t.transitions.c.time, t.transitions.c.id)
        if since is not None:
            q = q.where(t.transitions.c.time >= since)
        if until is not None:
            q = q.where(t.transitions.c.time <= until)
        if check_id is not None:
            q = q.where(t.transitions.c.check_id == check_id)
        if limit is not None:
            q = q.limit(limit)
        with self.engine.connect() as conn:
            rows = conn.execute(q).mappings().all()
        return [_logged_from_row(r) for r in rows]

    def changes(self, since: float, until: float) -> list[tuple]:
        """(check_id, time, old, new, muted) of every transition in [since, until], in time
        order: the columns a timeline needs and nothing else (no JSON value to decode:
        five times faster than `transitions` on a busy day)."""
        c = t.transitions.c
        q = (select(c.check_id, c.time, c.old, c.new, c.muted)
             .where(c.time >= since, c.time <= until).order_by(c.time, c.id))
        with self.engine.connect() as conn:
            return [tuple(r) for r in conn.execute(q).all()]

    def record_fitted(self, items: Sequence[tuple[Transition, AlarmState]],
                      notifications: Iterable[dict] = ()) -> list[int]:
        """`record` with every text cut to its column and every value made JSON-safe:
        the second chance of a write the database refused for what it contained."""
        items = [(_fit_transition(tr), _fit_state(state)) for tr, state in items]
        notes = [fit_row(t.notifications, {**n, "message": _json_safe(n.get("message"))})
                 for n in notifications]
        return self.record(items, notes)

    def quarantine(self, kind: str, check_id: str | None, error: str, payload: Any,
                   now: float) -> None:
        """Keep a refused row as text, so a person can see what was lost and why."""
        with self.engine.begin() as conn:
            conn.execute(insert(t.quarantine).values(
                time=now, kind=kind[:20], check_id=(check_id or None) and check_id[:200],
                error=error, payload=json.dumps(payload, default=str)[:100_000]))

    def quarantined(self, since: float = 0.0) -> list[dict]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(t.quarantine).where(t.quarantine.c.time >= since)
                                .order_by(t.quarantine.c.id)).mappings().all()
        return [dict(r) for r in rows]

    # -- latest values and history ------------------------------------------------------

    def save_latest(self, values: Iterable[LatestValue]) -> None:
        rows = [
            {"check_id": v.check_id, "time": v.time, "value": json_value(v.value),
             "severity": int(v.severity), "connected": v.connected, "server": v.server,
             "message": v.message}
            for v in values
        ]
        if not rows:
            return
        with self.engine.begin() as conn:
            self.fenced(conn)
            self._upsert(conn, t.latest_values, rows, ["check_id"])

    def latest(self, check_ids: Iterable[str] | None = None) -> dict[str, LatestValue]:
        """Each check's latest value; of `check_ids` only, if given (a few heartbeats
        among 100k checks: not all 100k rows)."""
        query = select(t.latest_values)
        with self.engine.connect() as conn:
            if check_ids is None:
                rows = conn.execute(query).mappings().all()
            else:  # in slices: SQLite limits the number of bound values
                ids, rows = sorted(check_ids), []
                for i in range(0, len(ids), 1000):
                    rows += conn.execute(query.where(
                        t.latest_values.c.check_id.in_(ids[i:i + 1000]))).mappings().all()
        return {
            r["check_id"]: LatestValue(r["check_id"], r["time"], r["value"],
                                       Severity(r["severity"]), r["connected"], r["server"],
                                       r["message"])
            for r in rows
        }

    def save_history(self, rows: list[dict]) -> None:
        """rows: check_id, minute, vmin, vmax, vlast, count (one per check and minute)."""
        if not rows:
            return
        clean = [dict(r, vlast=json_value(r["vlast"]),
                      vmin=_finite(r["vmin"]), vmax=_finite(r["vmax"])) for r in rows]
        with self.engine.begin() as conn:
            self.fenced(conn)
            self._upsert(conn, t.value_history, clean, ["check_id", "minute"])

    def history(self, check_id: str, since: float, until: float | None = None) -> list[dict]:
        q = (select(t.value_history).where(t.value_history.c.check_id == check_id)
             .where(t.value_history.c.minute >= int(since // 60))
             .order_by(t.value_history.c.minute))
        if until is not None:
            q = q.where(t.value_history.c.minute <= int(until // 60))
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(q).mappings().all()]

    def _upsert(self, conn: Connection, table, rows: list[dict], keys: list[str]) -> None:
        if self.dialect == "sqlite":
            from sqlalchemy.dialects.sqlite import insert as dialect_insert
        else:
            from sqlalchemy.dialects.postgresql import insert as dialect_insert
        stmt = dialect_insert(table)
        cols = {c: getattr(stmt.excluded, c) for c in rows[0] if c not in keys}
        conn.execute(stmt.on_conflict_do_update(index_elements=keys, set_=cols), rows)

    # -- retention ------------------------------------------------------------------------

    def purge(self, before: float, history: bool = True) -> dict[str, int]:
        """Delete log rows older than `before`; alarm states and queued work stay, and so
        does every row of an incident not over by `before` (still open, resolved since,
        or with notifications undelivered): its ack or resolve must still find who was
        told, and a restart which incidents were paged. `history=False` leaves the
        value history to `purge_history`."""
        with self.engine.begin() as conn:
            done = {
                "transitions": conn.execute(
                    delete(t.transitions).where(t.transitions.c.time < before)
                    .where(_over(t.transitions.c.incident_id, before))).rowcount,
                "value_history": conn.execute(
                    delete(t.value_history).where(t.value_history.c.minute < int(before // 60))
                ).rowcount if history else 0,
                "notifications": conn.execute(
                    delete(t.notifications).where(t.notifications.c.created_at < before)
                    .where(t.notifications.c.status.in_(
                        ("sent", "failed", "expired", "folded", "cancelled", "expanded")))
                    .where(_over(t.notifications.c.incident_id, before))
                ).rowcount,
                "commands": conn.execute(
                    delete(t.commands).where(t.commands.c.time < before)
                    .where(t.commands.c.status != "queued")).rowcount,
            }
        return done

    def purge_history(self, before: float, limit: int = 2000) -> int:
        """Delete up to `limit` rows of the oldest stored minute of value history if it is
        older than `before`; the rows deleted (0: nothing left to purge). Short
        transactions: an hour of 100k checks is 6M rows, and one DELETE of them held the
        engine's writer thread, and every alarm waiting to be stored behind it."""
        vh = t.value_history
        with self.engine.begin() as conn:
            oldest = conn.execute(select(func.min(vh.c.minute))).scalar()
            if oldest is None or oldest >= int(before // 60):
                return 0
            some = (select(vh.c.check_id).where(vh.c.minute == oldest).limit(limit)
                    .scalar_subquery())
            return max(1, conn.execute(delete(vh).where(
                vh.c.minute == oldest, vh.c.check_id.in_(some))).rowcount)

    # -- commands from front ends to the running engine -------------------------------

    def queue_command(self, verb: str, args: dict, actor: str, now: float) -> int:
        with self.engine.begin() as conn:
            return conn.execute(insert(t.commands).values(
                time=now, verb=verb, args=args, actor=actor, status="queued")
            ).inserted_primary_key[0]

    def queued_commands(self) -> list[Command]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(t.commands).where(t.commands.c.status == "queued")
                                .order_by(t.commands.c.id)).mappings().all()
        return [_command(r) for r in rows]

    def finish_command(self, command_id: int, status: str, result: str, now: float,
                       conn: Connection | None = None) -> None:
        stmt = update(t.commands).where(t.commands.c.id == command_id).values(
            status=status, result=result, done_at=now)
        if conn is not None:
            self.fenced(conn)
            conn.execute(stmt)
            return
        with self.engine.begin() as c:
            self.fenced(c)
            c.execute(stmt)

    def command(self, command_id: int) -> Command | None:
        with self.engine.connect() as conn:
            r = conn.execute(select(t.commands).where(t.commands.c.id == command_id)
                             ).mappings().first()
        return _command(r) if r else None

    # -- the engine's heartbeat (is `beamwatch run` alive?) ----------------------------

    def beat(self, name: str, pid: int, host: str, started: float, now: float,
             config_file: str, role: str = "leader", url: str | None = None) -> None:
        """One instance's beat (`name`: its id); `role`: leader or standby."""
        row = {"pid": pid, "host": host, "started": started, "beat": now,
               "config_file": config_file, "role": role, "url": url}
        with self.engine.begin() as conn:
            self._upsert(conn, t.engine_heartbeat, [{"name": name, **row}], ["name"])

    def save_oncall(self, rows: list[dict], now: float) -> None:
        """Who is on call now, per team (the running engine's snapshot for readers that
        do not have this beamline's config): replaces the previous one."""
        with self.engine.begin() as conn:  # upserts: both of a pair may write at once
            if rows:
                self._upsert(conn, t.oncall_now, [dict(r, time=now) for r in rows], ["team"])
            conn.execute(delete(t.oncall_now).where(
                t.oncall_now.c.team.not_in([r["team"] for r in rows])))

    def oncall_now(self) -> list[dict]:
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(
                select(t.oncall_now).order_by(t.oncall_now.c.team)).mappings().all()]

    def last_beat(self) -> dict | None:
        """The newest beat of a leader: is an engine deciding and sending?"""
        c = t.engine_heartbeat.c
        with self.engine.connect() as conn:
            r = conn.execute(select(t.engine_heartbeat)
                             .where(c.role.is_(None) | (c.role == "leader"))
                             .order_by(c.beat.desc())).mappings().first()
        return dict(r) if r else None

    def instances(self) -> list[dict]:
        """Every instance that beat recently enough to be remembered, newest first."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(t.engine_heartbeat)
                                .order_by(t.engine_heartbeat.c.beat.desc())).mappings().all()
        return [dict(r) for r in rows]

    def forget_instances(self, before: float) -> int:
        """Instances silent since `before` (stopped, replaced) leave the list."""
        with self.engine.begin() as conn:
            return conn.execute(delete(t.engine_heartbeat)
                                .where(t.engine_heartbeat.c.beat < before)).rowcount

    def count(self, table_name: str) -> int:
        table = t.metadata.tables[table_name]
        with self.engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(table)).scalar_one()


KEY_MAX = 300  # notifications.dedup_key


def fit_key(key: str) -> str:
    """A dedup key that fits its column and stays unique: long keys end in a digest."""
    if len(key) <= KEY_MAX:
        return key
    digest = hashlib.sha256(key.encode()).hexdigest()[:40]
    return f"{key[:KEY_MAX - 41]}#{digest}"


def fit_row(table, row: dict) -> dict:
    """Cut every string to the length of its column (VARCHAR(n) on PostgreSQL refuses more)."""
    out = dict(row)
    for name, value in row.items():
        col = table.c.get(name)
        if not isinstance(value, str) or col is None:
            continue
        value = value.replace("\x00", "")  # PostgreSQL text cannot hold NUL
        if isinstance(col.type, String) and col.type.length:
            value = value[:col.type.length]
        out[name] = value
    return out


def _json_safe(value: Any) -> Any:
    if value is None:
        return value
    return json.loads(json.dumps(value, default=str).replace("\\u0000", ""))


def _fit_transition(tr: Transition) -> Transition:
    from dataclasses import replace

    row = fit_row(t.transitions, _transition_row(tr))
    return replace(tr, check_id=row["check_id"], reason=row["reason"], actor=row["actor"],
                   incident_id=row["incident_id"], message=row["message"],
                   mute_detail=row["mute_detail"], value=_json_safe(json_value(tr.value)))


def _fit_state(state: AlarmState) -> AlarmState:
    from dataclasses import replace

    row = fit_row(t.alarm_states, {"check_id": state.check_id, "message": state.message,
                                   "acked_by": state.acked_by})
    return replace(state, value=_json_safe(json_value(state.value)), **row)


def _finite(x: Any) -> float | None:
    return x if isinstance(x, (int, float)) and math.isfinite(x) else None


def _transition_row(tr: Transition) -> dict:
    return {
        "time": tr.time, "check_id": tr.check_id, "old": int(tr.old), "new": int(tr.new),
        "current": int(tr.current), "acked": tr.acked, "value": json_value(tr.value),
        "message": tr.message, "reason": tr.reason, "actor": tr.actor,
        "muted": tr.muted.value if tr.muted else None, "mute_detail": tr.mute_detail,
        "incident_id": tr.incident_id,
    }


def _state_from_row(r) -> AlarmState:
    return AlarmState(
        check_id=r["check_id"], severity=Severity(r["severity"]), current=Severity(r["current"]),
        acked=r["acked"], acked_by=r["acked_by"], acked_at=r["acked_at"], since=r["since"],
        message=r["message"], value=r["value"],
        pending=None if r["pending"] is None else Severity(r["pending"]),
        pending_since=r["pending_since"],
    )


def _logged_from_row(r) -> LoggedTransition:
    from ..model import MuteReason

    tr = Transition(
        check_id=r["check_id"], time=r["time"], old=Severity(r["old"]), new=Severity(r["new"]),
        current=Severity(r["current"]), acked=r["acked"], value=r["value"],
        message=r["message"], reason=r["reason"], actor=r["actor"],
        muted=MuteReason(r["muted"]) if r["muted"] else None, mute_detail=r["mute_detail"],
        incident_id=r["incident_id"],
    )
    return LoggedTransition(r["id"], tr)


def _command(r) -> Command:
    return Command(r["id"], r["time"], r["verb"], r["args"], r["actor"], r["status"], r["result"])


def _over(incident_id, before: float):
    """SQL: this row belongs to no incident, or to one over before `before` (resolved
    then, or no longer known) with nothing of it still waiting to be delivered."""
    inc, n = t.incidents.c, t.notifications.c
    live = select(inc.id).where(inc.resolved.is_(None) | (inc.resolved >= before))
    waiting = select(n.incident_id).where(n.incident_id.is_not(None),
                                          n.status.in_(("pending", "sending")))
    return incident_id.is_(None) | (incident_id.not_in(live) & incident_id.not_in(waiting))
