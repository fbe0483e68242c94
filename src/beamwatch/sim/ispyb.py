"""An ISPyB-like data-collection queue in SQLite, for `sql:` checks on the sim.

    SELECT count(*) FROM ContainerQueueSample WHERE status = 'queued'

Users keep queuing samples (one a second) and the beamline collects them, so a
couple are waiting at any time. The `queue-stuck` fault (FAULT:QUEUE, a CA put
like every fault) stops the collecting and makes the queuing brisker: the
waiting count climbs 2 a second until `clear`, when the backlog is collected.
The supervisor owns the file and ticks it every second.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

TABLE = "ContainerQueueSample"
QUEUED_WHEN_HEALTHY = 2


class IspybQueue:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.stuck = False
        self._next = 1
        with self._connect() as db:
            db.execute(f"DROP TABLE IF EXISTS {TABLE}")
            db.execute(f"CREATE TABLE {TABLE} (containerQueueSampleId INTEGER PRIMARY KEY, "
                       "blSampleId INTEGER, status TEXT NOT NULL, queuedAt REAL NOT NULL)")
        self.tick()

    @property
    def url(self) -> str:
        """The SQLAlchemy URL of a read-only view of the queue."""
        return f"sqlite:///file:{self.path}?mode=ro&uri=true"

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=5)

    def tick(self) -> None:
        """One second of the beamline: samples queued; collected unless stuck."""
        with self._connect() as db:
            for _ in range(2 if self.stuck else 1):
                db.execute(f"INSERT INTO {TABLE} VALUES (?, ?, 'queued', ?)",
                           (self._next, 1000 + self._next, time.time()))
                self._next += 1
            if not self.stuck:
                db.execute(f"UPDATE {TABLE} SET status = 'collected' WHERE status = 'queued' "
                           f"AND containerQueueSampleId <= ?",
                           (self._next - 1 - QUEUED_WHEN_HEALTHY,))
        # the connection context manager commits; close it so the file is not held
        db.close()

    def queued(self) -> int:
        with self._connect() as db:
            (n,) = db.execute(f"SELECT count(*) FROM {TABLE} WHERE status = 'queued'").fetchone()
        db.close()
        return n
