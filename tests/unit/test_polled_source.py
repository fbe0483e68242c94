"""The polled-source machinery (HTTP, SQL, files): what a stop must never lose."""

from __future__ import annotations

import asyncio

from beamwatch.config import parse_config
from beamwatch.sources.polled import PolledSource, Reading


class Gated(PolledSource):
    """Every read waits for the test to open the gate."""

    def __init__(self, config):
        super().__init__("files", config)
        self.gate = asyncio.Event()
        self.waiting = 0

    async def read(self, check):
        self.waiting += 1
        await self.gate.wait()
        return Reading(1.0)


async def test_stop_ends_every_poll_even_when_reads_finish_as_it_cancels(tmp_path):
    """On Python 3.11, asyncio.wait_for returns the result of a read that finished in
    the same loop turn as the cancel, and the cancel is lost: a stop of 500 HTTP
    checks hung for ever. Each poll here finishes exactly then."""
    checks = "\n".join(f"  - {{id: f{i}, disk: {tmp_path}, every: 1s}}" for i in range(50))
    source = Gated(parse_config(f"beamline: T\nchecks:\n{checks}\n", "bw.yaml"))
    source.subscribe(source.checks)
    got = []
    await source.start(got.extend)
    while source.waiting < 50:  # every first poll is at most 1 s away
        await asyncio.sleep(0.05)
    source.gate.set()
    polls = list(source._tasks.values())
    await asyncio.sleep(0)  # the reads finish; their polls have not resumed yet
    await asyncio.wait_for(source.stop(), 5)  # TimeoutError: the stop hung
    assert all(task.done() for task in polls) and len(got) <= 50
