"""Alembic migrations, run programmatically at start-up: the schema is always at head.

Alembic (and its import, ~15 MB) is only loaded when the database is not at
HEAD already — the common case of every start but the first after an upgrade.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

MIGRATIONS = Path(__file__).parent / "migrations"
HEAD = "0004"  # the newest revision in migrations/versions (a test keeps this true)


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


def upgrade(engine: Engine, revision: str = "head") -> None:
    if revision == "head" and current(engine) == HEAD:
        return
    from alembic import command

    command.upgrade(alembic_config(engine), revision)
