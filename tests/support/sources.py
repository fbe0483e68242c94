"""What the source tests (CA, PVA) share: the records their IOC serves and a sink
that keeps every batch."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from beamwatch.model import Sample

# temp (an ai with alarm limits), an mbbi, a string, arrays, and a 10 Hz counter
SOURCE_DB = """
record(ai, "$(P)temp") {
    field(VAL, "20") field(PINI, "YES") field(PREC, "2") field(EGU, "C")
    field(HIGH, "50") field(HSV, "MINOR") field(HIHI, "100") field(HHSV, "MAJOR")
}
record(mbbi, "$(P)shutter") {
    field(ZRST, "Closed") field(ONST, "Open") field(VAL, "1") field(PINI, "YES")
}
record(stringin, "$(P)name") { field(VAL, "hello beamline") field(PINI, "YES") }
record(waveform, "$(P)wave") { field(FTVL, "DOUBLE") field(NELM, "8") }
record(waveform, "$(P)text") { field(FTVL, "CHAR") field(NELM, "64") }
record(calc, "$(P)tick") { field(SCAN, ".1 second") field(CALC, "A+1") field(INPA, "$(P)tick") }
"""


class Recorder:
    """A sink that keeps every batch, with a polling wait."""

    def __init__(self) -> None:
        self.batches: list[list[Sample]] = []

    def __call__(self, batch: list[Sample]) -> None:
        assert isinstance(batch, list) and batch
        self.batches.append(batch)

    @property
    def samples(self) -> list[Sample]:
        return [s for b in self.batches for s in b]

    def of(self, address: str) -> list[Sample]:
        return [s for s in self.samples if s.address == address]

    async def wait_for(self, pred: Callable[[Sample], bool], timeout: float = 10.0,
                       after: int = 0) -> Sample:
        """The first sample (from index `after` on) that satisfies pred."""
        deadline = time.monotonic() + timeout
        while True:
            for s in self.samples[after:]:
                if pred(s):
                    return s
            if time.monotonic() > deadline:
                raise AssertionError(f"no matching sample within {timeout}s; got "
                                     f"{self.samples[after:][-10:]}")
            await asyncio.sleep(0.01)
