"""The HTTP API fuzzed from its own OpenAPI schema (schemathesis): whatever the body,
the query or the path, with or without a valid token, the answer is never a 500, and
every answer conforms to the schema's status codes and content types."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    status_code_conformance,
)

from beamwatch.app import App
from beamwatch.sources.alertmanager import AlertmanagerSource
from beamwatch.sources.soft import SoftSource
from beamwatch.web.api import Backend
from beamwatch.web.app import create_app
from beamwatch.web.heartbeat import Beat

pytestmark = pytest.mark.integration

TOKEN = "fuzz-token-31c9"
CONFIG = """
beamline: I04
storage: {{url: "sqlite:///{db}"}}
web: {{listen: "off", tokens: {{fuzz: "{token}"}}}}
monitor: {{checks: false}}
modes: {{names: [user, maintenance], default: user}}
checks:
  - {{id: dcm-temp, group: optics, pv: "DCM:T", above: {{minor: 120, major: 140}}}}
  - {{id: fe-vacuum, group: vacuum, pv: "FE:VAC", above: {{major: 1e-7}}}}
  - {{id: ws1-down, alert: {{alertname: NodeDown}}}}
"""


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fuzz")
    path = tmp / "bw.yaml"
    path.write_text(CONFIG.format(db=tmp / "bw.db", token=TOKEN))
    app = App(path, sources={"ca": SoftSource("ca")})
    web = create_app(
        receive_beat=lambda *_: Beat.UNKNOWN, verdict=lambda: (True, "healthy"),
        backend=Backend(lambda: app.config, app.store, lambda _: [],
                        clock=app.clock.now),
        web=lambda: app.config.web,
        receive_alerts=AlertmanagerSource.from_config("alertmanager", app.config).receive)
    yield schemathesis.openapi.from_asgi("/openapi.json", web)
    app.store.close()


def test_no_input_makes_the_api_fail(api_schema):
    # each operation in turn, through hypothesis directly: schemathesis' pytest plugin
    # does not run under this pytest
    operations = [result.ok() for result in api_schema.get_all_operations()]
    operations = [op for op in operations if op.path != "/api/events"]  # a stream: no end
    assert len(operations) >= 14
    for operation in operations:
        fuzz(operation)


def fuzz(operation) -> None:
    @given(operation.as_strategy())
    @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck),
              database=None)
    def run(case) -> None:
        # the ack endpoint waits for an engine; none runs here, so acks are queued at once
        case.call_and_validate(
            headers={"Authorization": f"Bearer {TOKEN}"},
            checks=[not_a_server_error, status_code_conformance, content_type_conformance])

    run()
