"""A check's recent history as a PNG, for a phone screen: the per-minute value
(its min-max band shaded), the limits crossed shown as severity-coloured
marks at each transition, times in the beamline's timezone.

matplotlib with the Agg backend (no display, thread-safe per figure), imported
only when a plot is asked for; call `png` off the event loop (it takes ~0.1 s).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from datetime import datetime

from ..timefmt import zone

COLOURS = {"OK": "#2e7d32", "MINOR": "#f9a825", "MAJOR": "#c62828", "INVALID": "#6a1b9a"}


def png(title: str, minutes: Sequence[dict], transitions: Sequence[dict], tz: str,
        since: float, until: float) -> bytes | None:
    """`minutes`: api.past rows (time, span, vmin, vmax; archived ones too) or
    store.history rows (minute, vmin, vmax); `transitions`: service.history rows of
    kind transition. None when there is nothing numeric to draw."""
    points = [(_middle(r), r["vmin"], r["vmax"]) for r in minutes
              if isinstance(r.get("vmin"), int | float) and isinstance(r.get("vmax"), int | float)]
    if not points:
        return None
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.dates as mdates
    from matplotlib.figure import Figure

    tzinfo = zone(tz)

    def when(t: float) -> datetime:
        return datetime.fromtimestamp(t, tzinfo)

    fig = Figure(figsize=(8, 3.2), dpi=100)
    ax = fig.add_subplot()
    xs = [when(t) for t, _, _ in points]
    lows = [lo for _, lo, _ in points]
    highs = [hi for _, _, hi in points]
    ax.fill_between(xs, lows, highs, color="#90caf9", alpha=0.5, linewidth=0, step="mid")
    ax.plot(xs, [(lo + hi) / 2 for lo, hi in zip(lows, highs, strict=True)], color="#1565c0",
            linewidth=1.2)
    for tr in transitions:
        if since <= tr["time"] <= until and tr.get("kind", "transition") == "transition":
            ax.axvline(when(tr["time"]), color=COLOURS.get(tr["new"], "grey"), linewidth=1,
                       linestyle="--", alpha=0.8)
    ax.set_xlim(when(since), when(until))
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M\n%d %b", tz=tzinfo))
    ax.set_title(title, fontsize=11)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _middle(row: dict) -> float:
    """The middle of a row's bin: a store minute, or an archived bin of `span` s."""
    if "time" in row:
        return row["time"] + row.get("span", 60) / 2
    return row["minute"] * 60.0 + 30
