"""A live run that writes a beamline log for replay tests: the real App, one
SoftSource ("ca"), a FakeClock stepped second by second, dry notifiers."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from beamwatch.api.replay.drive import DryRegistry
from beamwatch.app import App
from beamwatch.clock import FakeClock
from beamwatch.model import Severity
from beamwatch.sources.soft import SoftSource

# second -> (pv, value, connected) or (pv, value, connected, record severity) to push
Script = Callable[[int], Iterable[tuple]]
Actions = Callable[[int, App, FakeClock], Any]  # what else happens at that second


async def run_live(path: Path, t0: float, seconds: int, script: Script,
                   actions: Actions | None = None) -> None:
    clock = FakeClock(t0)
    source = SoftSource("ca", clock)
    app = App(path, clock, {"ca": source})
    app.registry = app.worker.registry = DryRegistry(app.registry)  # nothing leaves
    await app.start()
    for t in range(seconds + 1):
        for pv, value, connected, *severity in script(t):
            source.push(pv, value, connected=connected,
                        severity=severity[0] if severity else Severity.OK)
        if actions is not None:
            actions(t, app, clock)
        await app.step()
        clock.advance(1.0)
    await app.close()  # writes the minute history
