"""The fault suite: real processes (IOC, PostgreSQL, `beamwatch run`) under failure."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.conftest import ca_env, ioc_factory  # noqa: F401 - shared fixtures
from tests.integration.test_run_process import hook  # noqa: F401 - a webhook receiver
from tests.support.pgcluster import PgCluster, private_cluster


@pytest.fixture
def pg_cluster() -> Iterator[PgCluster]:
    """A private PostgreSQL cluster this test may stop and start."""
    cluster = private_cluster()
    yield cluster
    cluster.close()
