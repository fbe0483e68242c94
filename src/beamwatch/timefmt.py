"""Times as users type and read them, in the beamline's timezone."""

from __future__ import annotations

import time
import zoneinfo
from datetime import datetime

from .config.types import parse_duration


def parse_when(text: str, tz: str, now: float | None = None) -> float:
    """'now', a duration back from now ('24h', '7d'), or an ISO time (naive = beamline time)."""
    now = time.time() if now is None else now
    text = text.strip()
    if text == "now":
        return now
    try:
        return now - parse_duration(text)
    except ValueError:
        pass
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"'{text}' is neither a duration like 24h nor a time like "
                         "2026-11-27T08:00") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=zoneinfo.ZoneInfo(tz))
    return dt.timestamp()


def show(t: float | None, tz: str, seconds: bool = True) -> str:
    if t is None:
        return "—"
    fmt = "%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M"
    return datetime.fromtimestamp(t, zoneinfo.ZoneInfo(tz)).strftime(fmt)


def ago(t: float | None, now: float | None = None) -> str:
    """'42s', '5m', '3h12m', '2d4h' since t."""
    if t is None:
        return "—"
    now = time.time() if now is None else now
    d = max(0, int(now - t))
    if d < 60:
        return f"{d}s"
    if d < 3600:
        return f"{d // 60}m"
    if d < 86400:
        return f"{d // 3600}h{(d % 3600) // 60:02d}m"
    return f"{d // 86400}d{(d % 86400) // 3600}h"
