"""Read every beamline's store in the shared database: worst state, open incidents,
who is on call, whether its monitor is alive. Read only: nothing here writes.

One engine for the whole database (no search path); each beamline's tables are
read through SQLAlchemy's schema_translate_map, so the same Core tables serve
every schema. The heartbeat is read with SELECT *: the HA pair adds columns to it
(an instance's role) that this reader shows when they are there.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError

from ..model import Severity
from ..store import tables as t
from .config import FacilityConfig

ONCALL_STALE = 180.0  # an on-call snapshot older than this was left by a stopped engine


@dataclass
class Instance:
    name: str
    host: str | None
    pid: int | None
    role: str | None  # from the HA pair's heartbeat, when it has one
    beat: float
    alive: bool


@dataclass
class BeamlineStatus:
    schema: str
    beamline: str | None = None
    problem: str | None = None  # no store in this schema, or one older than beamwatch 0007
    worst: str | None = None  # OK, MINOR, MAJOR, INVALID
    alarms: int = 0  # checks in alarm
    unacked: int = 0
    incidents: list[dict] = field(default_factory=list)  # open ones, newest first
    oncall: list[dict] = field(default_factory=list)  # team, person, name, since, stale
    instances: list[Instance] = field(default_factory=list)
    as_of: float | None = None  # the newest heartbeat: how current the rest is

    @property
    def monitor_alive(self) -> bool:
        return any(i.alive for i in self.instances)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["monitor_alive"] = self.monitor_alive
        return out


def facility_engine(config: FacilityConfig) -> Engine:
    return create_engine(config.storage.url, pool_pre_ping=True)


def beamwatch_schemas(conn: Connection) -> list[str]:
    """Every schema holding a beamwatch store (one with `store_meta`, 0007 or newer)."""
    rows = conn.execute(text(
        "SELECT table_schema FROM information_schema.tables WHERE table_name = 'store_meta' "
        "ORDER BY table_schema")).all()
    return [r[0] for r in rows]


def read_facility(config: FacilityConfig, engine: Engine,
                  now: float | None = None) -> list[BeamlineStatus]:
    now = time.time() if now is None else now
    with engine.connect() as conn:
        schemas = config.schemas or beamwatch_schemas(conn)
    return [read_beamline(engine, schema, now, config.monitor_down_after) for schema in schemas]


def read_beamline(engine: Engine, schema: str, now: float, down_after: float) -> BeamlineStatus:
    status = BeamlineStatus(schema)
    with engine.connect() as base:
        conn = base.execution_options(schema_translate_map={None: schema})
        try:
            status.beamline = conn.execute(select(t.store_meta.c.value).where(
                t.store_meta.c.key == "beamline")).scalar()
        except DBAPIError:
            base.rollback()
            status.problem = "no beamwatch store in this schema (or one older than 0007)"
            return status
        _alarms(conn, status)
        _incidents(conn, status)
        _instances(conn, schema, status, now, down_after)
        _oncall(conn, status, now)
    return status


def _alarms(conn: Connection, status: BeamlineStatus) -> None:
    c = t.alarm_states.c
    worst, alarms, unacked = conn.execute(select(
        func.max(c.severity), func.count().filter(c.severity > 0),
        func.count().filter((c.severity > 0) & c.acked.is_(False)))).one()
    status.worst = Severity(worst or 0).name
    status.alarms, status.unacked = alarms, unacked


def _incidents(conn: Connection, status: BeamlineStatus) -> None:
    c = t.incidents.c
    rows = conn.execute(select(c.id, c.kind, c.root, c.opened, c.severity, c.consequences)
                        .where(c.resolved.is_(None)).order_by(c.opened.desc())).mappings()
    status.incidents = [{"id": r["id"], "kind": r["kind"], "root": r["root"],
                         "opened": r["opened"], "severity": Severity(r["severity"]).name,
                         "checks": len(r["consequences"] or [])} for r in rows]


def _instances(conn: Connection, schema: str, status: BeamlineStatus, now: float,
               down_after: float) -> None:
    # SELECT *: columns the HA pair adds (role) are shown without this code knowing them
    quoted = schema.replace('"', '""')
    rows = conn.execute(text(f'SELECT * FROM "{quoted}".engine_heartbeat ORDER BY beat DESC')
                        ).mappings().all()
    status.instances = [Instance(r["name"], r.get("host"), r.get("pid"), r.get("role"),
                                 r["beat"], now - r["beat"] <= down_after) for r in rows]
    status.as_of = rows[0]["beat"] if rows else None


def _oncall(conn: Connection, status: BeamlineStatus, now: float) -> None:
    rows = conn.execute(select(t.oncall_now).order_by(t.oncall_now.c.team)).mappings()
    status.oncall = [{"team": r["team"], "person": r["person"], "name": r["name"],
                      "since": r["since"], "as_of": r["time"],
                      "stale": now - r["time"] > ONCALL_STALE} for r in rows]
