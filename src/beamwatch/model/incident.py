"""An incident: one fault from its first non-OK back to OK, root cause and consequences."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from .core import Severity

IOC_PREFIX = "ioc:"


class IncidentKind(enum.StrEnum):
    CHECK = "check"  # the root is a check
    IOC = "ioc"  # the root is an unreachable IOC (host:port)


@dataclass(frozen=True, slots=True)
class Incident:
    """A snapshot of one incident, as carried by every event.

    `consequences`: every check attached to it so far, in attachment order;
    `failing`: those of them still non-OK.
    """

    id: str
    kind: IncidentKind
    root: str  # check id, or "ioc:host:port"
    opened: float
    severity: Severity
    consequences: tuple[str, ...] = ()
    failing: tuple[str, ...] = ()
    resolved: float | None = None
    server: str | None = None  # for IOC incidents
    disconnected: tuple[str, ...] = ()  # for IOC incidents: the checks that lost the IOC
    promoted_from: str | None = None  # the incident this one's root was a consequence of

    @property
    def title(self) -> str:
        """The root cause as people read it."""
        if self.kind == IncidentKind.IOC:
            return f"IOC {self.server} unreachable ({len(self.disconnected)} PVs)"
        return self.root

    @property
    def summary(self) -> str:
        """'root cause: fe-vacuum; also affected: 40'."""
        return f"root cause: {self.title}; also affected: {len(self.consequences)}"

    @property
    def active(self) -> bool:
        return self.resolved is None
