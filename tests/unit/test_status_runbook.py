"""`beamwatch status` shows what to do for a check in alarm: its description and runbook
in the table, and as fields of --json (the web API's check detail reads the same rows)."""

import asyncio
import json

from typer.testing import CliRunner

from beamwatch.cli import app
from beamwatch.clock import FakeClock
from beamwatch.config import load_config
from beamwatch.engine.engine import Engine
from beamwatch.sources.soft import SoftSource
from beamwatch.store import Store

CONFIG = """
beamline: I04
storage: {{url: "sqlite:///{db}"}}
checks:
  - id: dcm-temp
    pv: BL04I-MO-DCM-01:TEMP1
    above: {{major: 140}}
    description: Second crystal of the DCM
    runbook: |
      Guidance: Check the LN2 flow on the DCM cryocooler
  - id: ring-current
    pv: SR-DI-DCCT-01:SIGNAL
    below: {{major: 10}}
    runbook: Call the control room
"""


def test_status_shows_the_runbook_of_checks_in_alarm(tmp_path, wide_output):
    path = tmp_path / "bw.yaml"
    path.write_text(CONFIG.format(db=tmp_path / "bw.db"))
    config = load_config(path)
    store, clock = Store(config.storage.url), FakeClock()
    source = SoftSource("ca", clock)

    async def fault():
        engine = Engine(config, {"ca": source}, store, clock)
        await engine.start()
        source.push("BL04I-MO-DCM-01:TEMP1", 150.0)
        source.push("SR-DI-DCCT-01:SIGNAL", 300.0)
        await engine.stop()

    asyncio.run(fault())
    store.close()
    runner = CliRunner()
    table = runner.invoke(app, ["status", "-c", str(path)], catch_exceptions=False).output
    assert "Second crystal of the DCM" in table
    assert "Guidance: Check the LN2 flow on the DCM cryocooler" in table
    assert "Call the control room" not in table  # OK: no clutter for checks that are fine
    data = json.loads(runner.invoke(app, ["status", "-c", str(path), "--json"]).output)
    rows = {r["id"]: r for r in data["checks"]}
    assert rows["dcm-temp"]["runbook"] == "Guidance: Check the LN2 flow on the DCM cryocooler\n"
    assert rows["dcm-temp"]["description"] == "Second crystal of the DCM"
    assert rows["ring-current"]["runbook"] == "Call the control room"
