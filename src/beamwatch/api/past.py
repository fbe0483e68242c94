"""A check's past values for plots: the store's minutes, and before the first of them
the archiver's (sources/archiver.py), in one list.

The store keeps a check's values from the minute beamwatch first watched it; an
Archiver Appliance may know the PV for years. A plot of the last 24 h right after
beamwatch started is thus mostly archived. Archived rows have the store's keys
(vmin, vmax, vlast, count, connected) plus `archived: true` and `span` (their bin:
60 s, or the mean's bin for long spans). The archiver being away never breaks a
plot: the stored minutes come back with `archive` saying why the rest is missing.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from ..config.schema import Config
from ..model import json_value
from ..sources import archiver
from ..store import Store

MINUTE = 60


@dataclass(frozen=True)
class PastValues:
    check: str
    since: float
    until: float
    rows: list[dict] = field(default_factory=list)  # oldest first; see module doc
    # None: no archive asked (none configured, or the store covers the span);
    # else what was asked and how it went, for a person: "archived: arch (PV) …" or
    # "archived data unavailable: archiver http://… did not answer …"
    archive: str | None = None
    archive_ok: bool = True

    def to_json(self) -> dict:
        return {"check": self.check, "since": self.since, "until": self.until,
                "minutes": self.rows, "archive": self.archive,
                "archive_ok": self.archive_ok}


KEEP = ("vmin", "vmax", "vlast", "count", "connected")


def values(config: Config, store: Store, check_id: str, since: float, until: float,
           recent: Iterable[dict] = ()) -> PastValues:
    """Per-minute rows of [since, until]: stored ones (and `recent`, the minutes the
    engine has not stored yet), and archived ones before the first stored minute."""
    minutes = {r["minute"]: r for r in store.history(check_id, since, until)}
    minutes.update((r["minute"], r) for r in recent)
    rows = [{"time": m * MINUTE, "span": MINUTE, **{k: minutes[m].get(k) for k in KEEP},
             "archived": False}
            for m in sorted(minutes) if m * MINUTE >= since - MINUTE]
    for row in rows:  # the engine's unstored minutes hold the value as it came
        row["vlast"] = json_value(row["vlast"])
    archive = archiver.archive_of(config, check_id)
    first = rows[0]["time"] if rows else until
    if archive is None or first - since < MINUTE:
        return PastValues(check_id, since, until, rows)
    try:
        samples = archiver.samples(archive, since, first)
    except archiver.ArchiverError as e:
        return PastValues(check_id, since, until, rows,
                          f"archived data unavailable: {e}", archive_ok=False)
    every = archiver.plan(since, first)[2]
    older = bins(samples, every or MINUTE)
    how = "raw" if every is None else f"mean per {every // 60} min"
    note = (f"archived: {archive.source} ({archive.pv}), {len(older)} rows ({how}) "
            f"before {_hhmm(first)} UTC" if older else
            f"archived: {archive.source} ({archive.pv}) has no values before "
            f"{_hhmm(first)} UTC")
    return PastValues(check_id, since, until, older + rows, note)


def bins(samples: Sequence[archiver.ArchivedSample], step: int) -> list[dict]:
    """Archived samples as rows of `step` seconds, like the store's minutes: the min
    and max of the numbers, the last value (numbers and strings; a waveform's is left
    out, too big for a plot row), the samples with a value, connected at the end."""
    out: dict[int, dict] = {}
    for s in samples:
        start = int(math.floor(s.time / step) * step)
        row = out.get(start)
        if row is None:
            row = out[start] = {"time": start, "span": step, "vmin": None, "vmax": None,
                                "vlast": None, "count": 0, "connected": True,
                                "archived": True}
        if not s.has_value:
            row["connected"] = False
            continue
        row["connected"] = True
        number = s.number
        if number is not None:
            row["vmin"] = number if row["vmin"] is None else min(row["vmin"], number)
            row["vmax"] = number if row["vmax"] is None else max(row["vmax"], number)
            row["vlast"] = number
        elif isinstance(s.value, str):
            row["vlast"] = s.value
        row["count"] += 1
    return [out[k] for k in sorted(out)]


def _hhmm(t: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M")
