"""The fault suite: real processes (IOC, PostgreSQL, `beamwatch run`) under failure."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.integration.conftest import ca_env, ioc_factory  # noqa: F401 - shared fixtures
from tests.integration.test_run_process import hook  # noqa: F401 - a webhook receiver
from tests.support.pgcluster import PgCluster, pg_bin


@pytest.fixture
def pg_cluster() -> Iterator[PgCluster]:
    """A private PostgreSQL cluster this test may stop and start."""
    bindir = pg_bin()
    if bindir is None:
        if os.environ.get("CI") == "true":
            pytest.fail("PostgreSQL's server binaries (initdb, pg_ctl) are needed in CI")
        pytest.skip("no /usr/lib/postgresql/*/bin/pg_ctl: apt-get install postgresql")
    cluster = PgCluster(bindir)
    yield cluster
    cluster.close()
