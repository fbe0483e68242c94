"""CaSource against real soft IOCs on loopback (tests.support.ioc).

Every test polls for what it waits for (no fixed sleeps but for "nothing
more arrives" checks). The slow one is the IOC restart: libca searches lost
channels again on its disconnect-governor tick, up to 10 s later.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import time
import uuid

import pytest

from tests.support.ioc import Ioc, require_epicscorelibs
from tests.support.sources import SOURCE_DB, Recorder

require_epicscorelibs()

import aioca  # noqa: E402

from beamwatch.clock import FakeClock  # noqa: E402
from beamwatch.config.schema import SourceConfig  # noqa: E402
from beamwatch.model import Sample, Severity  # noqa: E402
from beamwatch.sources import libca  # noqa: E402
from beamwatch.sources.base import SourceUnavailable  # noqa: E402
from beamwatch.sources.ca import CaSource  # noqa: E402

pytestmark = pytest.mark.integration

DB = SOURCE_DB

# 40 counters scanned together: their updates arrive in bursts.
MANY = 40
MANY_DB = "".join(
    f'record(calc, "$(P)n{i}") {{ field(SCAN, ".1 second") field(CALC, "A+1") '
    f'field(INPA, "$(P)n{i}") }}\n'
    for i in range(MANY)
)


@pytest.fixture(scope="module")
def ioc() -> Ioc:
    with Ioc(DB + MANY_DB) as ioc:
        yield ioc


@pytest.fixture(autouse=True)
async def _fresh_ca():
    """Each test has its own event loop: drop aioca's channels of this one at the end."""
    yield
    aioca.purge_channel_caches()


@pytest.fixture
async def source():
    sources: list[CaSource] = []

    def make(clock=None, **kwargs) -> CaSource:
        src = CaSource("ca", SourceConfig(kind="ca", **kwargs), clock)
        sources.append(src)
        return src

    yield make
    for src in sources:
        await src.stop()


def port_of(server: str | None) -> int:
    assert server and ":" in server, server
    return int(server.rsplit(":", 1)[1])


async def test_value_timestamp_severity_and_server(ioc: Ioc, source) -> None:
    pv = ioc.pv("temp")
    src, rec = source(), Recorder()
    src.subscribe([pv])
    await src.start(rec)

    first = await rec.wait_for(lambda s: s.address == pv)
    assert first.connected and first.error is None
    assert first.value == 20.0 and type(first.value) is float
    assert first.severity is Severity.OK
    assert abs(first.timestamp - time.time()) < 60  # the IOC's time of processing
    assert port_of(first.server) == ioc.port
    assert src.connected_count == 1
    assert first == Sample(pv, 20.0, first.timestamp, first.received, True, Severity.OK, 0,
                           first.server, None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        first.value = 1.0  # type: ignore[misc]

    await aioca.caput(pv, 150.0, wait=True)
    high = await rec.wait_for(lambda s: s.value == 150.0)
    assert high.severity is Severity.MAJOR
    assert high.status == 3  # HIHI
    assert high.timestamp >= first.timestamp
    assert high.server == first.server  # computed once per connection

    await aioca.caput(pv, 60.0, wait=True)
    assert (await rec.wait_for(lambda s: s.value == 60.0)).severity is Severity.MINOR

    await aioca.caput(pv, float("nan"), wait=True)
    nan = await rec.wait_for(lambda s: isinstance(s.value, float) and math.isnan(s.value))
    assert nan.connected and nan.error is None  # the checks decide about NaN

    stats = src.stats()
    assert stats["connected"] == 1 and stats["disconnected"] == 0
    assert stats["updates"] >= 4


async def test_enum_string_and_arrays(ioc: Ioc, source) -> None:
    names = {n: ioc.pv(n) for n in ("shutter", "name", "wave", "text")}
    clock = FakeClock()
    src, rec = source(clock), Recorder()
    src.subscribe(names.values())
    await src.start(rec)

    assert (await rec.wait_for(lambda s: s.address == names["shutter"])).value == "Open"
    assert (await rec.wait_for(lambda s: s.address == names["name"])).value == "hello beamline"
    await rec.wait_for(lambda s: s.address == names["wave"])
    await rec.wait_for(lambda s: s.address == names["text"])

    await aioca.caput(names["shutter"], "Closed", wait=True)
    await rec.wait_for(lambda s: s.address == names["shutter"] and s.value == "Closed")
    await aioca.caput(names["wave"], [1.5, 2.5, 3.5], wait=True)
    wave = await rec.wait_for(lambda s: s.address == names["wave"] and s.value == (1.5, 2.5, 3.5))
    assert all(type(v) is float for v in wave.value)
    await aioca.caput(names["text"], "I04 ready", datatype=aioca.DBR_CHAR_STR, wait=True)
    await rec.wait_for(lambda s: s.address == names["text"] and s.value == "I04 ready")
    assert {s.received for s in rec.samples} == {clock.now()}  # beamwatch's clock, injected


async def test_never_connected_pv_reports_after_timeout(ioc: Ioc, source) -> None:
    ghost = f"BWT-NOBODY-{uuid.uuid4().hex[:8]}:PV"
    src, rec = source(connect_timeout=0.5), Recorder()
    src.subscribe([ghost])
    started = time.monotonic()
    await src.start(rec)

    sample = await rec.wait_for(lambda s: s.address == ghost, timeout=3)
    assert time.monotonic() - started >= 0.4
    assert not sample.connected and sample.value is None and sample.server is None
    assert sample.error == "never connected: no IOC answered within 0.5s"
    assert src.stats()["disconnected"] == 1 and src.connected_count == 0


async def test_a_missing_pv_is_not_reported_while_others_keep_connecting(
    ioc: Ioc, source
) -> None:
    """A start of 100k PVs takes tens of seconds to connect: a PV late in that wave is
    not missing. Here the wave is PVs subscribed one by one, faster than the timeout."""
    ghost = f"BWT-NOBODY-{uuid.uuid4().hex[:8]}:PV"
    # the timeout is well above a connection's time on a loaded box; the wave outlasts it
    src, rec = source(connect_timeout=2.0), Recorder()
    src.subscribe([ghost])
    await src.start(rec)
    for i in range(12):  # a new PV connects every 0.3 s for 3.6 s
        src.subscribe([ioc.pv(f"n{i}")])
        await rec.wait_for(lambda s, i=i: s.address == ioc.pv(f"n{i}") and s.connected)
        assert src.settling()
        await asyncio.sleep(0.3)
    assert not rec.of(ghost), "reported while the others were still connecting"
    sample = await rec.wait_for(lambda s: s.address == ghost, timeout=6)
    assert sample.error == "never connected: no IOC answered within 2s"
    assert not src.settling()


async def test_a_warm_source_hands_over_each_pvs_newest_sample_at_start(
    ioc: Ioc, source
) -> None:
    """An HA standby connects while it waits; taking over, the engine gets every PV's
    current value at once, though CA sends nothing new for an unchanged PV."""
    temp, flag = ioc.pv("temp"), ioc.pv("name")
    src, rec = source(), Recorder()
    src.subscribe([temp])
    await src.warm()
    await aioca.caput(temp, 11.0, wait=True)
    await aioca.caput(temp, 12.0, wait=True)
    async with asyncio.timeout(10):
        while src.connected_count < 1 or src._kept.get(temp) is None \
                or src._kept[temp].value != 12.0:
            await asyncio.sleep(0.05)
    assert rec.samples == []  # nothing without a sink
    src.subscribe([flag])
    await src.start(rec)
    assert [(s.address, s.value) for s in rec.samples] == [(temp, 12.0)]  # at once, newest
    await rec.wait_for(lambda s: s.address == flag and s.connected)
    await aioca.caput(temp, 13.0, wait=True)
    await rec.wait_for(lambda s: s.address == temp and s.value == 13.0)


async def test_ioc_kill_and_restart(ioc_factory, source) -> None:
    own = ioc_factory(DB)
    pvs = [own.pv("temp"), own.pv("shutter")]
    src, rec = source(), Recorder()
    src.subscribe(pvs)
    await src.start(rec)
    for pv in pvs:
        await rec.wait_for(lambda s, pv=pv: s.address == pv and s.connected)
    assert src.connected_count == 2
    server = rec.of(pvs[0])[0].server
    assert port_of(server) == own.port

    mark = len(rec.samples)
    own.kill()
    for pv in pvs:
        gone = await rec.wait_for(lambda s, pv=pv: s.address == pv and not s.connected,
                                  after=mark)
        assert gone.error == "disconnected"
        assert gone.server == server  # which IOC went away
        assert gone.value is None
    assert src.connected_count == 0

    mark = len(rec.samples)
    own.restart()
    for pv in pvs:  # libca searches again on its own (disconnect governor: <= 10 s)
        back = await rec.wait_for(lambda s, pv=pv: s.address == pv and s.connected,
                                  timeout=15, after=mark)
        assert back.server == server and back.error is None
    assert rec.of(pvs[1])[-1].value == "Open"
    assert src.connected_count == 2


async def test_updates_arrive_in_batches(ioc: Ioc, source) -> None:
    pvs = [ioc.pv(f"n{i}") for i in range(MANY)]
    src, rec = source(), Recorder()
    src.subscribe(pvs)
    await src.start(rec)
    deadline = time.monotonic() + 5
    while src.stats()["updates"] < 5 * MANY and time.monotonic() < deadline:
        await asyncio.sleep(0.02)

    updates, calls = len(rec.samples), len(rec.batches)
    assert updates >= 5 * MANY
    assert calls * 4 <= updates, f"{updates} updates in {calls} sink calls"
    assert src.stats()["batches"] == calls


async def test_a_big_start_yields_and_a_change_meanwhile_holds(
        ioc: Ioc, source, monkeypatch) -> None:
    """100k channels are opened a slice at a time, the loop running between: a PV
    unsubscribed meanwhile is never opened, one subscribed meanwhile is opened once."""
    from beamwatch.sources import ca

    monkeypatch.setattr(ca, "OPEN_STEP", 2)
    pvs = [ioc.pv(f"n{i}") for i in range(6)]
    src, rec = source(), Recorder()
    src.subscribe(pvs)
    starting = asyncio.ensure_future(src.start(rec))
    await asyncio.sleep(0)  # the first slice is open
    assert not starting.done()
    src.unsubscribe([pvs[4]])
    src.subscribe([ioc.pv("n6")])
    await starting
    wanted = [*pvs[:4], pvs[5], ioc.pv("n6")]
    for pv in wanted:
        await rec.wait_for(lambda s, pv=pv: s.address == pv)
    assert not rec.of(pvs[4])
    assert src.stats()["subscribed"] == 6 and src.connected_count == 6


async def test_stop_delivers_nothing_more(ioc: Ioc, source) -> None:
    pv = ioc.pv("tick")
    src, rec = source(), Recorder()
    src.subscribe([pv])
    await src.start(rec)
    await rec.wait_for(lambda s: s.address == pv)
    mark = len(rec.samples)
    await rec.wait_for(lambda s: s.address == pv, after=mark)  # it is updating

    await src.stop()
    after_stop = len(rec.samples)
    await asyncio.sleep(0.35)  # three more scans of the record
    assert len(rec.samples) == after_stop
    assert src.connected_count == 0


async def test_subscribe_and_unsubscribe_while_running(ioc: Ioc, source) -> None:
    tick, temp = ioc.pv("tick"), ioc.pv("temp")
    src, rec = source(), Recorder()
    await src.start(rec)
    src.subscribe([tick])
    await rec.wait_for(lambda s: s.address == tick)
    src.subscribe([temp, tick])  # again: no second subscription
    await rec.wait_for(lambda s: s.address == temp)
    assert src.stats()["subscribed"] == 2 and src.connected_count == 2

    src.unsubscribe([tick])
    mark = len(rec.samples)
    await asyncio.sleep(0.35)
    assert not [s for s in rec.samples[mark:] if s.address == tick]
    stats = src.stats()
    assert (stats["subscribed"], stats["connected"]) == (1, 1)

    src.subscribe([tick])  # and back (a config reload)
    await rec.wait_for(lambda s: s.address == tick, after=mark)


async def test_a_monitor_error_from_libca_is_reported_and_the_next_value_recovers(
    ioc: Ioc, source
) -> None:
    pv = ioc.pv("temp")
    src, rec = source(), Recorder()
    src.subscribe([pv])
    await src.start(rec)
    await rec.wait_for(lambda s: s.address == pv and s.connected)

    # what libca's event callback hands over when it cannot deliver an update (here: read
    # access lost, ECA_NORDACCESS); the channel and its subscription stay
    monitors = src._monitors
    monitors._events.append((src._pvs[pv].handle, libca.FAILED, 368, None))
    monitors._wake()
    mark = len(rec.samples)
    failed = await rec.wait_for(lambda s: not s.connected, after=mark)
    assert failed.error.startswith("monitor error: ") and "read access" in failed.error.lower()
    assert src.connected_count == 0
    await aioca.caput(pv, 42.0, wait=True)
    back = await rec.wait_for(lambda s: s.connected, after=mark, timeout=3)
    assert back.value == 42.0 and src.connected_count == 1


async def test_addr_list_is_fixed_once_ca_runs(ca_env) -> None:
    aioca.get_channel_infos()  # the CA context exists from here on
    same = [f"{ca_env.host}:{p}" for p in ca_env.ports]
    CaSource("ca", SourceConfig(kind="ca", addr_list=same))  # what is in force: fine
    with pytest.raises(SourceUnavailable, match="already running"):
        CaSource("ca", SourceConfig(kind="ca", addr_list=["10.0.0.1:5064"]))
    with pytest.raises(SourceUnavailable, match="empty"):
        CaSource("ca", SourceConfig(kind="ca", addr_list=[]))
