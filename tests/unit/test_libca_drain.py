"""libca's hand-off to the loop (sources/libca.py Monitors._drain), without an IOC:
events queued by libca's thread are handed over a chunk per loop callback; falling
behind, each PV's newest value over a wider window is kept, in order, nothing newer
lost."""

from __future__ import annotations

import asyncio

import pytest

from beamwatch.sources import libca


@pytest.fixture
def monitors(monkeypatch):
    monkeypatch.setattr(libca.Monitors, "CHUNK", 3)
    monkeypatch.setattr(libca.Monitors, "MERGE", 8)
    loop = asyncio.new_event_loop()
    handed: list[list[str]] = []
    m = libca.Monitors(loop, lambda events: handed.append([e[3] for e in events]))
    yield m, handed
    m.shut()
    loop.close()


def queue(m, *values: str) -> None:
    """Values "1a", "2b" ...: PV handle 1, its value a; queued as libca's thread does."""
    for v in values:
        m._events.append((int(v[0]), libca.DBR_TIME_DOUBLE, 1, v))


def test_behind_each_pv_keeps_its_newest_value_and_a_callback_takes_one_chunk(monitors):
    m, handed = monitors
    queue(m, "1a", "2a", "3a", "4a", "5a", "1b", "2b", "3b", "4b", "5b")
    while m._events:
        m._drain()
    assert handed == [["4a", "5a", "1b"], ["2b", "3b", "4b"], ["5b"]]
    assert m.merged == 3


def test_keeping_up_every_update_is_handed_over(monitors):
    m, handed = monitors
    queue(m, "1a", "1b", "1c")
    m._drain()
    assert handed == [["1a", "1b", "1c"]] and m.merged == 0


def test_with_all_updates_nothing_is_merged_and_a_callback_still_takes_one_chunk(monitors):
    m, handed = monitors
    m.all_updates = True
    queue(m, "1a", "1b", "1c", "1d", "2a")
    while m._events:
        m._drain()
    assert handed == [["1a", "1b", "1c"], ["1d", "2a"]] and m.merged == 0
