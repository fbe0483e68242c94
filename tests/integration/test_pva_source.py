"""PvaSource against a real IOC serving PVAccess (QSRV2 of pvxs, `python -m pvxslibs.ioc`,
tests.support.ioc with pva=True) on loopback ports of its own.

Every test waits for what it expects (no fixed sleeps). The slow one is the restart:
pvxs searches a lost PV again on its own schedule (backing off to 30 s at most).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.ioc import Ioc, require_epicscorelibs, require_pvxs
from tests.support.sources import SOURCE_DB, Recorder

require_epicscorelibs()
require_pvxs()

from p4p.client.thread import Context as ThreadContext  # noqa: E402

from beamwatch.config.schema import SourceConfig  # noqa: E402
from beamwatch.model import Severity  # noqa: E402
from beamwatch.sources.base import SourceUnavailable  # noqa: E402
from beamwatch.sources.pva import PvaSource, client_conf  # noqa: E402
from tests.support.waiting import wait_for  # noqa: E402

pytestmark = pytest.mark.integration

DB = SOURCE_DB


@pytest.fixture(scope="module")
def ioc() -> Ioc:
    with Ioc(DB, pva=True) as ioc:
        yield ioc


@pytest.fixture
def writer(ioc: Ioc):
    """A p4p client of the test (threaded) that writes to the IOC over PVA."""
    ctx = ThreadContext("pva", conf=client_conf([ioc.pva_addr])[0], useenv=False)
    yield ctx
    ctx.close()


@pytest.fixture
async def source():
    sources: list[PvaSource] = []

    def make(addr_list: list[str], **kwargs) -> PvaSource:
        src = PvaSource("pva", SourceConfig(kind="pva", addr_list=addr_list, **kwargs))
        sources.append(src)
        return src

    yield make
    for src in sources:
        await src.stop()


async def test_value_severity_and_timestamp_arrive(ioc: Ioc, source, writer) -> None:
    pv = ioc.pv("temp")
    src, rec = source([ioc.pva_addr]), Recorder()
    src.subscribe([pv])
    await src.start(rec)

    first = await rec.wait_for(lambda s: s.address == pv)
    assert first.connected and first.error is None
    assert first.value == 20.0 and type(first.value) is float
    assert first.severity is Severity.OK

    before = time.time()
    writer.put(pv, 60.0)
    high = await rec.wait_for(lambda s: s.value == 60.0)
    assert high.severity is Severity.MINOR  # the record's HIGH alarm
    assert before - 1 <= high.timestamp <= time.time() + 1  # the IOC's processing time
    writer.put(pv, 150.0)
    assert (await rec.wait_for(lambda s: s.value == 150.0)).severity is Severity.MAJOR
    assert src.stats()["connected"] == 1


async def test_enum_is_its_label_and_strings_arrive(ioc: Ioc, source, writer) -> None:
    shutter, name = ioc.pv("shutter"), ioc.pv("name")
    src, rec = source([ioc.pva_addr]), Recorder()
    src.subscribe([shutter, name])
    await src.start(rec)

    assert (await rec.wait_for(lambda s: s.address == shutter)).value == "Open"
    assert (await rec.wait_for(lambda s: s.address == name)).value == "hello beamline"
    writer.put(shutter, {"value.index": 0})
    closed = await rec.wait_for(lambda s: s.address == shutter and s.value != "Open")
    assert closed.value == "Closed"  # a later update still carries its label


async def test_array_is_a_tuple(ioc: Ioc, source, writer) -> None:
    wave = ioc.pv("wave")
    src, rec = source([ioc.pva_addr]), Recorder()
    src.subscribe([wave])
    await src.start(rec)
    await rec.wait_for(lambda s: s.address == wave)
    writer.put(wave, [1.5, 2.5, 3.5])
    got = await rec.wait_for(lambda s: s.address == wave and s.value)
    assert got.value == (1.5, 2.5, 3.5)


async def test_many_updates_reach_the_sink_in_batches(ioc: Ioc, source, writer) -> None:
    pv = ioc.pv("temp")
    src, rec = source([ioc.pva_addr]), Recorder()
    names = [pv, ioc.pv("shutter"), ioc.pv("name"), ioc.pv("wave")]
    src.subscribe(names)
    await src.start(rec)
    for name in names:
        await rec.wait_for(lambda s, name=name: s.address == name)
    for value in range(30):
        writer.put(pv, float(value))
    await rec.wait_for(lambda s: s.value == 29.0)
    assert len(rec.batches) < len(rec.samples)  # several samples per sink call


async def test_server_killed_then_restarted(source) -> None:
    with Ioc(DB, pva=True) as ioc:
        pv = ioc.pv("temp")
        src, rec = source([ioc.pva_addr]), Recorder()
        src.subscribe([pv])
        await src.start(rec)
        await rec.wait_for(lambda s: s.address == pv and s.connected)

        ioc.kill()
        lost = await rec.wait_for(lambda s: not s.connected)
        assert lost.value is None and lost.error == "disconnected"
        assert lost.severity is Severity.INVALID
        assert src.stats()["connected"] == 0

        mark = len(rec.samples)
        t0 = time.monotonic()
        ioc.start()
        back = await rec.wait_for(lambda s: s.connected, timeout=60, after=mark)
        print(f"reconnected {time.monotonic() - t0:.1f}s after the restart")
        assert back.value == 20.0 and back.error is None


async def test_addr_list_is_the_only_place_searched(ioc: Ioc, source, ca_env) -> None:
    """A source whose addr_list points elsewhere does not find the PV (even though
    the environment could), and says so after connect_timeout."""
    port = ca_env.acquire()  # a port nothing serves
    try:
        os.environ["EPICS_PVA_ADDR_LIST"] = ioc.pva_addr
        src, rec = source([f"127.0.0.1:{port}"], connect_timeout=0.5), Recorder()
        src.subscribe([ioc.pv("temp")])
        await src.start(rec)
        never = await rec.wait_for(lambda s: True)
        assert not never.connected
        assert never.error == "never connected: no PVA server answered within 0.5s"
    finally:
        os.environ.pop("EPICS_PVA_ADDR_LIST", None)
        ca_env.release(port)


def test_empty_addr_list_is_refused() -> None:
    with pytest.raises(SourceUnavailable, match="addr_list is empty"):
        PvaSource("beam", SourceConfig(kind="pva", addr_list=[" "]))


# --- end to end: beamwatch run ------------------------------------------------------

BIN = Path(sys.executable).parent / "beamwatch"  # the venv's (PYTHONPATH is inherited)


def cli(cfg: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN), *args, "-c", str(cfg)],
                          capture_output=True, text=True, timeout=60)


def status_of(cfg: Path, check_id: str) -> dict | None:
    out = cli(cfg, "status", "--json")
    if out.returncode != 0:
        return None
    return next((c for c in json.loads(out.stdout)["checks"] if c["id"] == check_id), None)




def test_run_pva_check_above_threshold_is_major(tmp_path: Path, ioc: Ioc, writer) -> None:
    writer.put(ioc.pv("temp"), 20.0)
    writer.put(ioc.pv("shutter"), {"value.index": 1})  # "Open"
    cfg = tmp_path / "bw.yaml"
    cfg.write_text(f"""
beamline: TEST
storage: {{url: "sqlite:///{tmp_path / 'bw.db'}"}}
sources: {{pva: {{kind: pva, addr_list: ["{ioc.pva_addr}"]}}}}
checks:
  - id: det-temp
    pva: {ioc.pv("temp")}
    above: {{major: 40}}
  - id: det-shutter
    pva: {ioc.pv("shutter")}
    when: "value != 'Open'"
""")
    proc = subprocess.Popen([str(BIN), "run", "-c", str(cfg)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        # `status` before `run` has created the database races it to create the tables
        # (seen: "table alarm_states already exists"); its first line comes after
        assert "watching" in proc.stdout.readline()
        ok = wait_for(lambda: (s := status_of(cfg, "det-temp")) and s["value"] == 20.0 and s,
                      what="det-temp's first value")
        assert ok["severity"] == "OK"
        writer.put(ioc.pv("temp"), 45.0)
        major = wait_for(lambda: (s := status_of(cfg, "det-temp"))
                         and s["severity"] == "MAJOR" and s, what="det-temp MAJOR")
        assert major["value"] == 45.0
        assert status_of(cfg, "det-shutter")["severity"] == "OK"  # "Open", by its label
    except AssertionError as error:
        proc.send_signal(signal.SIGTERM)
        raise AssertionError(f"{error}\nstatus: {cli(cfg, 'status', '--json').stdout}\n"
                             f"beamwatch run said:\n{proc.communicate(timeout=20)[0]}") from None
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=20)
        writer.put(ioc.pv("temp"), 20.0)
    assert "Traceback" not in out, out
