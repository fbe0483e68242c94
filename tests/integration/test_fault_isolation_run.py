"""`beamwatch run` against a real softIoc: a PV whose value breaks its check's
expression (inf fed to `int(value)`) makes only that check INVALID, and a fault on
another PV is still stored as a transition."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from beamwatch.model import Severity
from beamwatch.store import Store
from tests.support.waiting import wait_for

BIN = Path(sys.executable).parent / "beamwatch"

DB = """
record(ai, "$(P)COUNTS") { field(VAL, "1") }
record(ai, "$(P)TEMP") { field(VAL, "1") }
"""


def write_config(tmp_path: Path, ioc) -> Path:
    cfg = tmp_path / "bw.yaml"
    cfg.write_text(f"""
beamline: TEST
storage: {{url: "sqlite:///{tmp_path / 'bw.db'}"}}
web: {{listen: "off"}}  # no HTTP API needed here (tests may run side by side)
sources: {{ca: {{kind: ca, addr_list: ["{ioc.addr}"]}}}}
checks:
  - id: counts
    pv: {ioc.pv("COUNTS")}
    when: "int(value) > 3"
  - id: temp
    pv: {ioc.pv("TEMP")}
    above: {{major: 10}}
""")
    return cfg




def status(cfg: Path) -> dict[str, dict]:
    out = subprocess.run([str(BIN), "status", "--json", "-c", str(cfg)], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return {c["id"]: c for c in json.loads(out.stdout)["checks"]}


def test_inf_breaks_only_its_own_check_and_another_fault_is_stored(tmp_path, ioc_factory):
    ioc = ioc_factory(DB)
    cfg = write_config(tmp_path, ioc)
    store = Store(f"sqlite:///{tmp_path / 'bw.db'}")
    proc = subprocess.Popen([str(BIN), "run", "-c", str(cfg)], env={**os.environ,
                            **ioc.client_env}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        wait_for(lambda: {"counts", "temp"} <= set(store.latest()), what="both PVs connected")
        ioc.command(f"dbpf {ioc.pv('COUNTS')} inf")
        counts = wait_for(lambda: status(cfg)["counts"]["severity"] == "INVALID"
                          and status(cfg)["counts"], what="counts INVALID")
        assert "infinity" in counts["message"], counts

        ioc.command(f"dbpf {ioc.pv('TEMP')} 20")
        [row] = wait_for(lambda: store.transitions(check_id="temp"), what="temp fault stored")
        assert (row.transition.new, row.transition.message) == (
            Severity.MAJOR, "20 above major limit 10")
        assert status(cfg)["temp"]["severity"] == "MAJOR"
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=20)
        store.close()
    assert proc.returncode == 0, out
    assert "Traceback" not in out, out
