"""Alembic migrations, run programmatically at start-up: the schema is always at head.

Alembic (and its import, ~15 MB) is only loaded when the database is not at
HEAD already — the common case of every start but the first after an upgrade.
"""

from __future__ import annotations

import time
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

MIGRATIONS = Path(__file__).parent / "migrations"
HEAD = "0007"  # the newest revision in migrations/versions (a test keeps this true)


def alembic_config(engine: Engine):
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["engine"] = engine
    return cfg


def current(engine: Engine) -> str | None:
    try:
        with engine.connect() as conn:
            return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    except DBAPIError:  # no table yet: a new database
        return None


def upgrade(engine: Engine, revision: str = "head", wait: float = 30.0) -> None:
    """Bring the schema to `revision`. Two processes may start on a new database at
    once (`beamwatch run` and a `beamwatch status`): the one that loses the race to
    create the tables waits for the other's migration to finish instead of failing."""
    if revision == "head" and current(engine) == HEAD:
        return
    from alembic import command

    try:
        command.upgrade(alembic_config(engine), revision)
    except DBAPIError:
        if revision != "head" or not _wait_for_head(engine, wait):
            raise


def _wait_for_head(engine: Engine, wait: float) -> bool:
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if current(engine) == HEAD:
            return True
        time.sleep(0.2)
    return False
