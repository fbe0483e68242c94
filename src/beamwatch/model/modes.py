"""Beamline mode records: what changed the mode, and a manual override."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any


class ModeSource(enum.StrEnum):
    PV = "pv"
    OVERRIDE = "override"
    EXPIRY = "expiry"  # an override ran out
    SCHEDULE = "schedule"
    DEFAULT = "default"


@dataclass(frozen=True, slots=True)
class ModeChange:
    """A record for the log. `old == new` is possible for override commands and
    expiries that leave the mode as it was — they are still worth a line."""

    time: float
    old: str
    new: str
    source: ModeSource
    author: str | None = None
    reason: str = ""

    @property
    def changed(self) -> bool:
        return self.old != self.new

    def __str__(self) -> str:
        who = f" by {self.author}" if self.author else ""
        why = f": {self.reason}" if self.reason else ""
        return f"mode {self.old} -> {self.new} ({self.source}{who}){why}"


@dataclass(frozen=True, slots=True)
class ModeProblem:
    """The mode PV said something unusable; the mode stayed `kept`."""

    time: float
    raw: Any
    kept: str
    detail: str

    def __str__(self) -> str:
        return self.detail


ModeRecord = ModeChange | ModeProblem


@dataclass(frozen=True, slots=True)
class Override:
    mode: str
    author: str
    reason: str
    start: float
    until: float
