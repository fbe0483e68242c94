"""`beamwatch run` as a real process watching real files: images that stop arriving
and a detector log that gains errors show as MAJOR in `beamwatch status --json`."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
from pathlib import Path

from tests.support import waiting

BIN = Path(sys.executable).parent / "beamwatch"


def wait_for(predicate, timeout: float = 30.0, what: str = "condition"):
    try:
        return waiting.wait_for(predicate, timeout, what)
    except AssertionError as e:
        raise AssertionError(f"{e}; last seen: {LAST}") from None


class Detector:
    """Writes an image every 0.2 s into data/<run>/ until stopped, like a detector."""

    def __init__(self, data: Path):
        self.data = data
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        n = 0
        while not self.stop.is_set():
            run = self.data / f"run{n // 20:03}"
            run.mkdir(parents=True, exist_ok=True)
            (run / f"img_{n:05}.cbf").write_bytes(b"\0" * 64)
            n += 1
            self.stop.wait(0.2)


LAST: dict[str, dict] = {}  # the last status seen, for a failure's message


def checks_by_id(cfg: Path) -> dict[str, dict]:
    out = subprocess.run([str(BIN), "status", "--json", "-c", str(cfg)], capture_output=True,
                         text=True, timeout=60)
    LAST.clear()
    if out.returncode != 0:  # `run` may still be creating the store
        LAST["error"] = {"output": out.stdout + out.stderr}
        return {}
    LAST.update({c["id"]: c for c in json.loads(out.stdout)["checks"]})
    return dict(LAST)


def check(cfg: Path, check_id: str) -> dict:
    return checks_by_id(cfg).get(check_id, {})


def test_images_that_stop_arriving_and_log_errors_are_major(tmp_path):
    data, log = tmp_path / "data", tmp_path / "detector.log"
    log.write_text("INFO detector armed\n")
    cfg = tmp_path / "bw.yaml"
    cfg.write_text(f"""
beamline: TEST
storage: {{url: "sqlite:///{tmp_path / 'bw.db'}"}}
monitor: {{checks: false}}
checks:
  - {{id: images, file: "{data}/*/*.cbf", age: {{major: 3s}}, every: 0.5s,
     disconnect_grace: 5s}}
  - {{id: detector-errors, log: "{log}", match: "ERROR", window: 1m, every: 0.5s,
     above: {{major: 0}}}}
""")
    detector = Detector(data)
    detector.thread.start()
    proc = subprocess.Popen([str(BIN), "run", "-c", str(cfg)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        # the store exists once `run` says it is watching (a `status` before that would
        # race it creating the tables)
        started = proc.stdout.readline()
        assert started.startswith("beamwatch: watching 2 checks"), started
        wait_for(lambda: [(c.get("current"), c.get("connected"))
                          for c in checks_by_id(cfg).values()] == [("OK", True)] * 2,
                 what="both checks OK while images arrive")
        detector.stop.set()
        images = wait_for(lambda: (c := check(cfg, "images")).get("severity") == "MAJOR"
                          and c, what="images MAJOR once they stop")
        assert "above major limit 3" in images["message"]
        with log.open("a") as fh:
            fh.write("ERROR frame 1234 lost: FPGA timeout\n")
        errors = wait_for(lambda: (c := check(cfg, "detector-errors")).get("severity")
                          == "MAJOR" and c, what="detector-errors MAJOR")
        # the message, not `value`: the latest-value row may lag the state by a second
        assert errors["message"] == "1 above major limit 0", json.dumps(errors)
    finally:
        detector.stop.set()
        proc.send_signal(signal.SIGTERM)
        output = proc.communicate(timeout=20)[0]
    assert proc.returncode == 0, output
    assert "Traceback" not in output
