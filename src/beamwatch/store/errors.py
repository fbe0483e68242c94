"""Which store failures pass (retry the same write) and which never will.

A write that fails because the database is away, locked or out of disk
succeeds later, unchanged: keep it and retry. A write the database refuses
for what it contains (a value too long, a type it cannot take, a broken
constraint) fails the same way for ever: retrying it would block every later
write, so the writer splits it and sets the refused part aside (quarantine).
"""

from __future__ import annotations

from sqlalchemy import exc


class LeaseLost(Exception):
    """This instance does not hold the leader's lease (any more): it must not store
    decisions or start sends (store/lease.py). Transient for the batch writer: the
    batch waits, and is dropped with the engine when the instance steps down."""


def is_transient(error: BaseException) -> bool:
    """True when the same write may succeed later (connection, lock, disk, timeout)."""
    if isinstance(error, LeaseLost):
        return True
    if isinstance(error, exc.DBAPIError) and error.connection_invalidated:
        return True
    return isinstance(error, (exc.OperationalError, exc.InterfaceError, exc.TimeoutError,
                              exc.DisconnectionError, OSError))


def describe(error: BaseException) -> str:
    """One line: the error's class and the database's own words, without the SQL."""
    orig = getattr(error, "orig", None) or error
    text = str(orig).strip().splitlines()[0] if str(orig).strip() else ""
    return f"{type(orig).__name__}: {text}"[:500]


class StoreMismatch(Exception):
    """The store belongs to another beamline: writing into it would mix two logs."""

    def __init__(self, where: str, owner: str, beamline: str):
        self.owner, self.beamline = owner, beamline
        super().__init__(f"the store {where} belongs to beamline {owner!r}, not {beamline!r} "
                         f"(beamline: in the config): give each beamline its own "
                         f"storage.schema or SQLite file")
