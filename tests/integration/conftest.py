"""Fixtures shared by the integration tests.

EPICS: every test of one pytest process shares one libca context, and libca
reads EPICS_CA_ADDR_LIST only when that context is created. `ca_env` (autouse,
session) therefore reserves the port pool of tests.support.ioc and sets the CA
client environment before any test can touch Channel Access; each IOC then
borrows a port of that pool (`ioc_factory`, or `Ioc(...)` as a context manager).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

try:
    from tests.support.ioc import CaPortPool, Ioc, ca_port_pool
except ModuleNotFoundError:  # run as `pytest` (not `python -m pytest`) from the repo root
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from tests.support.ioc import CaPortPool, Ioc, ca_port_pool


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
