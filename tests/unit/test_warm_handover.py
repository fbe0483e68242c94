"""A warm standby's source hands what it kept to the engine when it takes over: in
slices (100k samples at once held the new leader's loop), oldest never after newest."""

import asyncio

from beamwatch.model import Sample
from beamwatch.sources import base
from beamwatch.sources.base import Subscriptions


class Warmable(Subscriptions):
    """The base's warm/take-over logic, with no backend: tests push samples into the
    sink the source would call."""

    _pv_class = str

    def __init__(self):
        self.name, self._pvs, self._batch = "fake", {}, []
        self._sink, self._flush_handle, self.batches = None, None, 0

    async def start(self, sink):
        if await self._take_over(sink):
            return
        self._sink = sink

    def _open(self, pv):
        pass

    def _close(self, pv):
        pass

    def arrive(self, address: str, value: float) -> None:
        self._sink([Sample(address, value, value, value)])


async def warm_with(kept: int, hand_over: int, monkeypatch) -> Warmable:
    """A source standing by that kept one sample (1.0) of each of pv0 .. pv<kept-1>, and
    hands over `hand_over` samples per loop turn."""
    monkeypatch.setattr(base, "HAND_OVER", hand_over)
    source = Warmable()
    await source.warm()
    for i in range(kept):
        source.arrive(f"pv{i}", 1.0)
    return source


async def test_kept_samples_go_over_in_slices_and_newer_ones_after_them(monkeypatch):
    source = await warm_with(8, 3, monkeypatch)
    source.arrive("pv0", 2.0)  # only the newest of a PV is kept
    batches: list[list[tuple[str, float]]] = []
    taking_over = asyncio.ensure_future(
        source.start(lambda b: batches.append([(s.address, s.value) for s in b])))
    await asyncio.sleep(0)  # the first slice has gone over
    assert batches == [[("pv0", 2.0), ("pv1", 1.0), ("pv2", 1.0)]]
    source.arrive("pv1", 3.0)  # newer than what went over: straight on, after it
    source.arrive("pv7", 3.0)  # newer than what is still kept: replaces it
    await taking_over
    source.arrive("pv5", 4.0)  # running: straight to the sink
    assert [len(b) for b in batches] == [3, 1, 3, 2, 1]
    delivered = [s for b in batches for s in b]
    assert delivered[3:] == [("pv1", 3.0), ("pv3", 1.0), ("pv4", 1.0), ("pv5", 1.0),
                             ("pv6", 1.0), ("pv7", 3.0), ("pv5", 4.0)]


async def test_a_failing_sink_does_not_stop_the_take_over(monkeypatch):
    source = await warm_with(4, 2, monkeypatch)
    got = []

    def sink(batch):
        if not got:
            got.append(None)
            raise RuntimeError("a bug in a check")
        got.extend(s.address for s in batch)

    await source.start(sink)
    source.arrive("pv9", 2.0)
    assert got == [None, "pv2", "pv3", "pv9"]


async def test_a_source_stopped_during_the_hand_over_stays_stopped(monkeypatch):
    source = await warm_with(3, 1, monkeypatch)
    got = []
    taking_over = asyncio.ensure_future(source.start(got.extend))
    await asyncio.sleep(0)
    source._close_all()  # what stop() does
    await taking_over
    assert len(got) == 1 and source._sink is None
