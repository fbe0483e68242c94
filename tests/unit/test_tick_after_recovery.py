"""A held alarm whose hold ends in the very second the fault recovers: the recovery,
already judged but not yet decided, comes before the tick decides what was held. Else
the tick opened an incident for a fault already over, paged it, and logged a fate row
(OK -> OK "paged") after the recovery; seen when a restarted IOC came back just as
the 10 s hold ended (test_run_process, on a loaded box)."""

from __future__ import annotations

from beamwatch.app import App
from beamwatch.clock import FakeClock
from beamwatch.model import Severity
from beamwatch.sources.soft import SoftSource
from beamwatch.store.outbox import Outbox

PV = "BL04I-EA-DET-01:TEMP"
CONFIG = """
beamline: I04
storage: {{url: "sqlite:///{db}"}}
monitor: {{checks: false}}
checks:
  - id: det-chiller
    pv: BL04I-EA-CHIL-01:STA
    when: "value != 'Running'"
  - id: det-temp
    pv: {pv}
    above: {{major: 30}}
    depends_on: [det-chiller]  # so its alarms are held 10 s for the chiller to fail too
channels:
  hook: {{kind: webhook, webhook_url: "http://127.0.0.1:9/never"}}
routes:
  - to: [channel:hook]
"""


async def test_a_fault_that_recovers_as_its_hold_ends_pages_nobody(tmp_path):
    path = tmp_path / "bw.yaml"
    path.write_text(CONFIG.format(db=tmp_path / "bw.db", pv=PV))
    clock = FakeClock()
    source = SoftSource("ca", clock)
    app = App(path, clock, {"ca": source})
    await app.start()
    try:
        source.push("BL04I-EA-CHIL-01:STA", "Running")
        source.push(PV, 20.0)
        source.push(PV, 40.0)  # MAJOR: held for a root cause to show up (10 s)
        await app.engine.flush()
        clock.advance(10)  # the hold is over ...
        source.push(PV, 20.0)  # ... and the fault is too: judged, not decided yet
        app._tick_engine()  # the second's tick comes before the flush
        await app.engine.flush()
        log = [(r.transition.old, r.transition.new, r.transition.reason)
               for r in app.store.transitions(check_id="det-temp")]
        assert log == [(Severity.OK, Severity.MAJOR, "evaluation"),
                       (Severity.MAJOR, Severity.OK, "evaluation")]
        assert Outbox(app.store).rows(check_id="det-temp") == []
    finally:
        await app.close()
