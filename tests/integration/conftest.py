"""Fixtures shared by the integration tests.

EPICS: every test of one pytest process shares one libca context, and libca
reads EPICS_CA_ADDR_LIST only when that context is created. `ca_env` (autouse,
session) therefore reserves the port pool of tests.support.ioc and sets the CA
client environment before any test can touch Channel Access; each IOC then
borrows a port of that pool (`ioc_factory`, or `Ioc(...)` as a context manager).
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

try:
    from tests.support.ioc import CaPortPool, Ioc, ca_port_pool
except ModuleNotFoundError:  # run as `pytest` (not `python -m pytest`) from the repo root
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from tests.support.ioc import CaPortPool, Ioc, ca_port_pool


@pytest.fixture
def sim(tmp_path_factory):
    """A fresh simulated beamline per test: what one fault leaves behind (a beam coming
    back, a vacuum recovering) must not become the next test's incident."""
    from beamwatch.sim.beamline import SimBeamline
    from tests.support.ioc import require_epicscorelibs

    require_epicscorelibs()
    beamline = SimBeamline(base_port=0, workdir=tmp_path_factory.mktemp("sim")).start()
    yield beamline
    beamline.stop()


@pytest.fixture(scope="session", autouse=True)
def ca_env() -> CaPortPool:
    """The session's CA port pool; EPICS_CA_ADDR_LIST lists all its ports."""
    return ca_port_pool()


@pytest.fixture
def ioc_factory(ca_env: CaPortPool) -> Iterator:
    """`ioc_factory(db_text, macros=None)` -> a running Ioc, closed after the test."""
    iocs: list[Ioc] = []

    def make(db_text: str, macros: dict[str, str] | None = None, **kwargs) -> Ioc:
        ioc = Ioc(db_text, macros, pool=ca_env, **kwargs)
        iocs.append(ioc)
        return ioc

    yield make
    for ioc in iocs:
        ioc.close()


PG = os.environ.get("BEAMWATCH_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def _need(what: str, why: str) -> None:
    """In CI a missing server fails the test; on a workstation it skips, saying how."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{what} is needed in CI: {why}")
    pytest.skip(f"{what} not available ({why}); set BEAMWATCH_TEST_PG to enable")


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A throwaway PostgreSQL database for one test, dropped afterwards."""
    try:
        import psycopg
    except ImportError as e:
        _need("psycopg", str(e))
    admin = PG.replace("postgresql+psycopg://", "postgresql://")
    try:
        conn = psycopg.connect(admin, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as e:
        _need(f"PostgreSQL at {PG}", str(e).strip())
    name = f"bw_{uuid.uuid4().hex[:10]}"
    conn.execute(f'CREATE DATABASE "{name}"')
    yield PG.rsplit("/", 1)[0] + "/" + name
    conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    conn.close()


MARIADB = os.environ.get("BEAMWATCH_TEST_MARIADB", "mysql+pymysql://root@127.0.0.1:3306/test")


@pytest.fixture
def mariadb_url() -> Iterator[str]:
    """A throwaway MariaDB database for one test, dropped afterwards."""
    try:
        import pymysql
    except ImportError as e:
        _need("pymysql", str(e))
    try:
        conn = pymysql.connect(host="127.0.0.1", port=int(MARIADB.rsplit(":", 1)[1].split("/")[0]),
                               user="root", connect_timeout=3, autocommit=True)
    except pymysql.err.OperationalError as e:
        _need(f"MariaDB at {MARIADB}", str(e))
    name = f"bw_{uuid.uuid4().hex[:10]}"
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE {name}")
    yield MARIADB.rsplit("/", 1)[0] + "/" + name
    with conn.cursor() as cur:
        cur.execute(f"DROP DATABASE {name}")
    conn.close()
