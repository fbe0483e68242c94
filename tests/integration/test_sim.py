"""The simulated beamline as a CA client sees it: real IOC processes on loopback.

One sim for the module (a unique prefix, free ports), read through its
supervisor (aioca, in the supervisor's process: see beamwatch.sim.ca for why
not this one), faults injected both through the API and by the `beamwatch sim`
CLI in a separate process, as an operator would. Every wait is a poll with a
deadline, never a fixed sleep.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from typing import TypeVar

import pytest

from tests.support.ioc import require_epicscorelibs

pytestmark = pytest.mark.integration

T = TypeVar("T")
MINOR = 1


def wait_for(probe: Callable[[], T], done: Callable[[T], bool], timeout: float,
             what: str) -> T:
    """Call `probe` until `done(result)`; fail with the last result after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if done(result):
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout:.0f}s; last: {result!r}"[:2000])
        time.sleep(0.25)


def sim_cli(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "beamwatch.sim", *args], capture_output=True,
                          text=True, timeout=timeout, env=dict(os.environ))


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    require_epicscorelibs()
    from beamwatch.sim import SimBeamline

    prefix = f"BWS{uuid.uuid4().hex[:6].upper()}:"
    with SimBeamline(prefix=prefix, base_port=0,
                     workdir=tmp_path_factory.mktemp("sim")) as beamline:
        yield beamline


def test_addr_list_names_each_ioc_on_loopback() -> None:
    from beamwatch.sim import SimLayout

    layout = SimLayout("X:", 20000)
    assert layout.addr_list == " ".join(f"127.0.0.1:{p}" for p in range(20000, 20005))
    assert layout.client_env["EPICS_CA_AUTO_ADDR_LIST"] == "NO"
    assert layout.pv("SR-DI-DCCT-01:SIGNAL") == "X:SR-DI-DCCT-01:SIGNAL"
    assert layout.pva_address == "127.0.0.1:20007"


def test_every_pv_answers_with_plausible_values(sim) -> None:
    names = sim.pv_names()
    assert len(sim.pv_names(helpers=False)) >= 300
    readings = sim.read(names)
    assert [n for n, r in readings.items() if not r.connected] == []
    assert not sim.startup["unsettled"]
    assert [n for n, r in readings.items() if r.in_alarm] == []  # a quiet beamline at start

    def value(name: str):
        return readings[sim.pv(name)].value

    assert 298 < value("SR-DI-DCCT-01:SIGNAL") < 302
    assert readings[sim.pv("SR-DI-DCCT-01:SIGNAL")].units == "mA"
    assert value("CS-CS-MSTAT-01:MODE") == "User"
    assert value("CS-CS-MSTAT-01:BEAMENERGY") == pytest.approx(3.0)
    assert 0 <= value("SR-CS-FILL-01:COUNTDOWN") <= 600
    assert value("FE04I-PS-SHTR-01:STA") == "Open"
    assert 1e-10 < value("FE04I-VA-GAUGE-01:P") < 1e-8
    assert 1e-10 < value("BL04I-VA-IONP-05:P") < 1e-8
    assert 80 < value("BL04I-MO-DCM-01:TEMP1") < 95
    assert 99 < value("BL04I-EA-CSTRM-01:TEMP") < 101
    assert 0 < value("BL04I-EA-DEWAR-01:LEVEL") <= 100
    assert value("BL04I-CS-MODE:MODE") == "user"
    assert value("BL04I-EA-EIGER-01:CAM:DetectorState_RBV") == "Idle"
    assert value("BL04I-MO-ROBOT-01:PIN_MOUNTED") == "Pin Mounted"
    assert value("BL04I-EA-PIN-01:I") > 1
    assert value("CS-CS-MSTAT-01:MESS01").startswith("User run")


def test_vacuum_loss_puts_dozens_of_pvs_in_alarm(sim) -> None:
    beamline = sim.pv_names(helpers=False)

    # injected from another process, the way an operator or a demo script would
    done = sim_cli("fault", "vacuum-loss", "--prefix", sim.prefix,
                   "--base-port", str(sim.base_port))
    assert done.returncode == 0, done.stderr
    assert "BL04I-SIM:FAULT:VACUUM" in done.stdout

    readings = wait_for(
        lambda: sim.read(beamline),
        lambda got: sum(r.connected and r.severity >= MINOR for r in got.values()) >= 40,
        timeout=12, what=">= 40 beamline PVs in alarm after vacuum-loss")
    assert readings[sim.pv("FE04I-VA-GAUGE-05:P")].severity == 2  # MAJOR
    assert readings[sim.pv("BL04I-VA-IONP-12:P")].value > 1e-7

    # and by cause: the interlock closes the FE shutter, which takes the beam away
    shutter, pin = sim.pv("FE04I-PS-SHTR-01:STA"), sim.pv("BL04I-EA-PIN-01:I")
    after = wait_for(lambda: sim.read([shutter, pin]),
                     lambda got: got[shutter].value == "Closed" and got[pin].severity >= MINOR,
                     timeout=8, what="FE shutter closed and no beam on the i-pin")
    assert after[shutter].severity >= MINOR and after[pin].value < 0.1

    sim.clear()
    gauge = sim.pv("FE04I-VA-GAUGE-05:P")
    wait_for(lambda: sim.read([gauge])[gauge], lambda r: r.value < 1e-7, timeout=10,
             what="FE vacuum recovering after clear")


def test_ioc_down_disconnects_one_ioc_until_clear(sim) -> None:
    endstation = sim.pv_names("endstation")
    machine = sim.pv_names("machine")
    before = sim.status()["iocs"]["endstation"]

    sim.fault("ioc-down", ioc="endstation")  # returns once the process is gone
    assert sim.status()["down"] == "endstation"
    down = sim.read(endstation + machine, timeout=0.5)
    assert [n for n in endstation if down[n].connected] == []
    assert [n for n in machine if not down[n].connected] == []

    sim.clear()  # returns once the IOC answers again
    assert sim.status()["down"] is None
    wait_for(lambda: sim.read(endstation, timeout=0.5),
             lambda got: all(r.connected for r in got.values()),
             timeout=15, what="every endstation PV back after clear")
    after = sim.status()["iocs"]["endstation"]
    assert after["running"] and after["starts"] == before["starts"] + 1
    assert after["pid"] != before["pid"]


def test_cli_unknown_fault_is_a_one_line_error() -> None:
    done = sim_cli("fault", "vacuum-leak")
    assert done.returncode == 2
    assert "unknown fault 'vacuum-leak'" in done.stderr
    assert "vacuum-loss" in done.stderr  # the suggestion
    assert "Traceback" not in done.stderr


def test_cli_fault_without_a_sim_says_so(sim) -> None:
    # the sim's own base port plus 10: nothing listens there (the sim holds +0..+5)
    done = sim_cli("fault", "spike", "--base-port", str(sim.base_port + 10))
    assert done.returncode == 2
    assert "no simulated beamline answers" in done.stderr
    assert "Traceback" not in done.stderr


def test_images_stop_on_collection_stalled_and_errors_on_detector_errors(sim) -> None:
    images, log = sim.data_dir / "images", sim.data_dir / "detector.log"

    def count() -> int:
        return sum(1 for _ in images.glob("*/*.cbf"))

    def errors() -> int:
        return log.read_text().count(" ERROR ") if log.exists() else 0

    start = count()
    wait_for(count, lambda n: n >= start + 2, timeout=10, what="images arriving")
    sim.fault("collection-stalled")
    stalled = count()
    sim.fault("detector-errors")
    wait_for(errors, lambda n: n >= 3, timeout=10, what="ERROR lines in the detector log")
    # 3+ s later: at most the image written before the flag reached the supervisor
    assert count() <= stalled + 1
    sim.clear()
    after = count()
    wait_for(count, lambda n: n >= after + 2, timeout=10, what="images again after clear")
    quiet = errors()
    wait_for(count, lambda n: n >= after + 3, timeout=10, what="more images")
    assert errors() == quiet  # no more ERROR lines once cleared


def test_the_endstation_serves_pvaccess_on_its_own_port_only(sim) -> None:
    """An areaDetector-like IOC: the Eiger's temperature over PVA, on the sim's PVA port."""
    from p4p.client.thread import Context

    name = sim.pv("BL04I-EA-EIGER-01:CAM:Temp0_RBV")
    conf = {"EPICS_PVA_ADDR_LIST": sim.layout.pva_address, "EPICS_PVA_AUTO_ADDR_LIST": "NO"}
    with Context("pva", conf=conf, useenv=False) as ctx:
        value = ctx.get(name, timeout=10)
        assert 15 < float(value) < 35 and value.severity == 0
        with pytest.raises(TimeoutError):  # the machine IOC serves Channel Access only
            ctx.get(sim.pv("SR-CS-IOC-01:HEARTBEAT"), timeout=1)


def test_slow_faults_drift_until_cleared(sim) -> None:
    """dewar-draining, disk-filling and cryojet-drift move their PV at the rate given
    (here fast, for a test; slow and realistic by default); clear brings each back."""
    level, free, temp, filling = (sim.pv(n) for n in (
        "BL04I-EA-DEWAR-01:LEVEL", "BL04I-EA-DISK-01:FREE", "BL04I-EA-CSTRM-01:TEMP",
        "BL04I-EA-DEWAR-01:FILLING"))
    before = sim.read([level, free, temp])
    for name in ("dewar-draining", "disk-filling", "cryojet-drift"):
        sim.fault(name, rate=120.0)  # 2 %/s, 2 %/s, 2 K/s
    after = wait_for(lambda: sim.read([level, free, temp, filling]),
                     lambda got: got[temp].value > before[temp].value + 6, 30,
                     "the cryojet drifting up")
    assert after[level].value < before[level].value - 5  # draining, the autofill off
    assert after[filling].value == 0
    assert after[free].value < before[free].value - 5
    assert after[temp].value < 150  # a drift, not the 1 K/s warm-up of a lost gas flow
    sim.clear()
    back = wait_for(lambda: sim.read([level, free, temp]),
                    lambda got: got[free].value >= 62 and got[temp].value < 101, 30,
                    "back after clear")
    assert back[free].severity == 0
    # the level stops draining (the autofill refills it once below 40 %: the acceptance
    # test of forecasts sees that)
    assert back[level].value > after[level].value - 5


def test_only_the_slow_faults_take_a_rate() -> None:
    from beamwatch.sim import faults
    from beamwatch.sim.errors import SimError

    assert faults.plan("dewar-draining") == ("FAULT:DRAIN", 0.4)  # a realistic pace
    assert faults.plan("cryojet-drift", rate=2) == ("FAULT:DRIFT", 2.0)
    with pytest.raises(SimError, match="takes no rate; only the slow faults do"):
        faults.plan("vacuum-loss", rate=3)
    with pytest.raises(SimError, match="--rate must be more than 0"):
        faults.plan("disk-filling", rate=0)
    listed = json.loads(sim_cli("faults", "--json").stdout)
    assert {f["name"]: f["rate_unit"] for f in listed if f["rate_unit"]} == {
        "dewar-draining": "%/min", "disk-filling": "%/min", "cryojet-drift": "K/min"}
