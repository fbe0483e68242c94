"""`status` shows the value that goes with the severity it shows."""

from beamwatch.api import service
from beamwatch.config import parse_config
from beamwatch.model import AlarmState, Severity, Transition
from beamwatch.store import LatestValue, Store

CONFIG = """
beamline: I04
storage: {{url: "sqlite:///{db}"}}
checks:
  - {{id: queue, pv: Q, above: {{major: 50}}}}
"""


def test_a_transition_newer_than_the_latest_values_shows_its_own_value(tmp_path):
    config = parse_config(CONFIG.format(db=tmp_path / "bw.db"))
    store = Store(config.storage.url)
    store.save_latest([LatestValue("queue", 100.0, 3, Severity.OK, True, None, None)])
    tr = Transition("queue", 101.0, Severity.OK, Severity.MAJOR, Severity.MAJOR, False, 63,
                    "63 above major limit 50", "threshold")
    store.record([(tr, AlarmState("queue", Severity.MAJOR, Severity.MAJOR, since=101.0,
                                  message="63 above major limit 50", value=63))])
    [row] = [c for c in service.status(config, store) if c.id == "queue"]
    assert (row.severity, row.value, row.message) == ("MAJOR", 63, "63 above major limit 50")
    store.save_latest([LatestValue("queue", 102.0, 64, Severity.MAJOR, True, None, None)])
    [row] = [c for c in service.status(config, store) if c.id == "queue"]
    assert row.value == 64  # newer values still show once they are flushed
    store.close()
