"""The beamline log: transitions, alarm states, values, the outbox, commands."""

from .store import Command, LatestValue, LoggedTransition, Store

__all__ = ["Command", "LatestValue", "LoggedTransition", "Store"]
