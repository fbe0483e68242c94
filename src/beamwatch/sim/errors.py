"""The sim's errors: each says what went wrong and what to do, for a one-line CLI message."""

from __future__ import annotations


class SimError(RuntimeError):
    """Anything the simulated beamline cannot do; the message is for a human."""


class UnknownFault(SimError):
    """A fault name that is not in the catalogue."""


class SimNotRunning(SimError):
    """No simulated beamline answers on the expected ports."""


class PortInUse(SimError):
    """A port the sim needs is taken."""


def from_kind(kind: str | None, message: str) -> SimError:
    """Rebuild an error sent across the supervisor pipe by its class name."""
    cls = globals().get(kind or "")
    if not (isinstance(cls, type) and issubclass(cls, SimError)):
        cls = SimError
    return cls(message)
