"""`beamwatch replay`: run a (new) config over the stored history, offline, and say
what it would have notified versus what was notified — a dry run of a config
change before it goes live.

Three parts, one job each:

* `reconstruct`: the stored log -> a time-ordered stream of samples (values,
  connection, the record's EPICS severity), acks, mode changes and silences, from
  `since - warmup` (alarms already standing when the period starts are raised in
  the warm-up, not counted) to `until`;
* `drive`: that stream -> a real App with a fake clock and dry notifiers, on a
  throw-away store -> what it would notify;
* `compare`: would-notify versus was-notified, the report and its JSON.

The live log (the store named by `storage.url`) is only read.
"""

from __future__ import annotations

import asyncio
import tempfile
import time as _time
from pathlib import Path

from ...config.schema import Config
from ...store import Store
from .compare import (
    BOTH,
    ONLY_NEW,
    ONLY_OLD,
    Notice,
    ReplayReport,
    ReplayRow,
    compare,
    decided,
    delivery_notes,
    was_notified,
)
from .drive import Progress, drive
from .reconstruct import reconstruct

__all__ = ["BOTH", "ONLY_NEW", "ONLY_OLD", "Notice", "Progress", "ReplayReport", "ReplayRow",
           "areplay", "compare", "replay"]


def replay(config: Config, store: Store, since: float, until: float | None = None,
           progress: Progress | None = None, *, config_path: str | Path | None = None,
           warmup: float = 3600.0, tolerance: float = 300.0) -> ReplayReport:
    """Replay `config` over `store` (read only) for [since, until]; see the module doc.
    `config_path`: the file `config` came from (calendars are read relative to it)."""
    return asyncio.run(areplay(config, store, since, until, progress, config_path=config_path,
                               warmup=warmup, tolerance=tolerance))


async def areplay(config: Config, store: Store, since: float, until: float | None = None,
                  progress: Progress | None = None, *, config_path: str | Path | None = None,
                  warmup: float = 3600.0, tolerance: float = 300.0) -> ReplayReport:
    started = _time.monotonic()
    until = _time.time() if until is None else until
    if until <= since:
        raise ValueError("the period is empty: --until must be after --since")
    stream = reconstruct(config, store, since, until, warmup)
    with tempfile.TemporaryDirectory(prefix="beamwatch-replay-") as tmp:
        run = await drive(stream, Path(tmp), config_path, progress)
    report = ReplayReport(config.beamline, since, until, stream.start, checks=len(config.checks),
                          replayed=stream.replayed, no_data=stream.no_data,
                          not_in_config=stream.not_in_config, samples=run.samples,
                          ticks=run.ticks, history_rows=stream.history_in_window,
                          transitions_old=stream.transitions_in_window,
                          transitions_new=run.transitions)
    report.rows = compare(decided(run.notifications, since, until),
                          was_notified(store, since, until), tolerance)
    report.notes += stream.notes + run.notes + delivery_notes(store, since, until)
    if report.empty:
        report.notes.insert(0, "nothing to replay: the log has no value history and no "
                               "transitions in this period")
    report.elapsed = _time.monotonic() - started
    return report
