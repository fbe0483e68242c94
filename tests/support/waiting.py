"""Waiting on the outside world (a process, a server, the store) in integration tests:
poll until it holds, with a deadline that only ends a broken run, never a fixed sleep."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


def wait_for(predicate: Callable[[], T], timeout: float = 30.0, what: str = "condition",
             *, every: float = 0.2) -> T:
    """What `predicate()` returns once it is truthy; AssertionError after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")


def status_of(beamwatch: Path, config: Path) -> dict[str, dict]:
    """`beamwatch status --json`, by check id."""
    out = subprocess.run([str(beamwatch), "status", "--json", "-c", str(config)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return {c["id"]: c for c in json.loads(out.stdout)["checks"]}
