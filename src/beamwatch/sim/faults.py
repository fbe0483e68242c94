"""The named faults of the simulated beamline, and how to inject them.

A fault is one CA put to a record of the sim-control IOC
($(P)BL04I-SIM:...). The beamline IOCs read those records through CA links
and their own records do the rest (see simlink.db), so a fault can be
injected by any process that can caput: `beamwatch sim fault`, a test, or
plain `caput BL04I-SIM:FAULT:VACUUM 1`. `ioc-down` writes the IOC's name to
BL04I-SIM:IOCDOWN, which the supervisor monitors: it stops that IOC and
starts it again when the record returns to "none" (`clear`).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from . import ca
from .errors import SimError, SimNotRunning, UnknownFault
from .inventory import CHATTER_GAUGE, DOWNABLE_IOCS, SPIKE_GAUGE
from .layout import DEFAULT_BASE_PORT, SimLayout

DEFAULT_DOWN_IOC = "endstation"


@dataclass(frozen=True)
class Fault:
    name: str
    summary: str  # one line, for `beamwatch sim faults`
    record: str  # the sim-control record written, under BL04I-SIM:
    value: int | float | str = 1
    lasts: float | None = None  # seconds until it clears itself; None: until `clear`
    takes_ioc: bool = False
    rate_unit: str | None = None  # a slow fault: the value is its rate (`--rate`) in this

    def to_json(self) -> dict[str, object]:
        return {"name": self.name, "summary": self.summary, "record": self.record,
                "lasts": self.lasts, "takes_ioc": self.takes_ioc,
                "rate": self.value if self.rate_unit else None, "rate_unit": self.rate_unit}


FAULTS: dict[str, Fault] = {f.name: f for f in (
    Fault("vacuum-loss",
          "front-end vacuum loss: every gauge and ion pump rises to 5e-6 mbar, valves and "
          "shutters close, XBPM/QBPM/i-pin/flux lose the beam (>50 PVs in alarm)",
          "FAULT:VACUUM"),
    Fault("cryojet-warming",
          "cryojet gas flow fails: the sample gas temperature climbs 1 K/s from 100 K",
          "FAULT:CRYOJET"),
    Fault("ring-dump",
          "storage ring beam dump: current to 0, machine mode 'No Beam', top-up off, "
          "beam-dependent readings drop; clear re-injects at 30 mA/s",
          "FAULT:DUMP"),
    Fault("ioc-down",
          f"the supervisor stops one IOC process (default {DEFAULT_DOWN_IOC}; --ioc "
          f"{'|'.join(DOWNABLE_IOCS)}): its PVs disconnect until clear",
          "IOCDOWN", value=DEFAULT_DOWN_IOC, takes_ioc=True),
    Fault("chatter",
          f"{CHATTER_GAUGE}:P flips across its HIGH level (1e-7 mbar) every second",
          "FAULT:CHATTER"),
    Fault("spike",
          f"{SPIKE_GAUGE}:P bursts to 8e-7 mbar (MAJOR) for 5 s, then pumps back down",
          "FAULT:SPIKE", lasts=5.0),
    Fault("dewar-empty",
          "LN2 dewar autofill fails: the level falls 2 %/s; once empty the cryojet flow "
          "fails and the sample warms",
          "FAULT:DEWAR"),
    # slow faults, for forecasts: a realistic pace by default, `--rate` for a quick test
    Fault("dewar-draining",
          "the LN2 dewar drains slowly with its autofill off (default 0.4 %/min, --rate); "
          "clear refills it",
          "FAULT:DRAIN", value=0.4, rate_unit="%/min"),
    Fault("disk-filling",
          "the data disk (BL04I-EA-DISK-01:FREE) fills (default 0.1 %/min of free space, "
          "--rate); clear frees it",
          "FAULT:DISKFILL", value=0.1, rate_unit="%/min"),
    Fault("cryojet-drift",
          "the sample gas temperature drifts up from 100 K (default 0.05 K/min = 3 K/h, "
          "--rate); clear brings it back",
          "FAULT:DRIFT", value=0.05, rate_unit="K/min"),
    Fault("robot-error",
          "sample changer controller error 40, 'Light curtain tripped'",
          "FAULT:ROBOT"),
    Fault("queue-stuck",
          "the data-collection queue stops: samples pile up in the ISPyB-like "
          "ContainerQueueSample table (ispyb.sqlite), 2 more queued each second",
          "FAULT:QUEUE"),
    Fault("collection-stalled",
          "the detector stops writing images into the data directory",
          "FAULT:COLLECTION"),
    Fault("detector-errors",
          "the detector log gains an ERROR line every second",
          "FAULT:DETECTOR"),
    Fault("gda-down",
          "the GDA status service (HTTP GET /api/status on base port + 6) answers "
          "state FAULT instead of RUNNING",
          "FAULT:GDA"),
    Fault("clear",
          "every fault off and a stopped IOC started again; readings recover within seconds",
          "CLEAR"),
)}


def get(name: str) -> Fault:
    try:
        return FAULTS[name]
    except KeyError:
        close = difflib.get_close_matches(name, FAULTS, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise UnknownFault(
            f"unknown fault '{name}'{hint}; faults: {', '.join(FAULTS)}"
        ) from None


def plan(name: str, ioc: str | None = None,
         rate: float | None = None) -> tuple[str, int | float | str]:
    """The control record and value that inject fault `name` (a slow fault's value is
    its rate: `rate`, or its realistic default)."""
    fault = get(name)
    if ioc is not None and not fault.takes_ioc:
        raise SimError(f"fault '{name}' takes no IOC; only ioc-down does")
    if rate is not None:
        if fault.rate_unit is None:
            slow = ", ".join(f.name for f in FAULTS.values() if f.rate_unit)
            raise SimError(f"fault '{name}' takes no rate; only the slow faults do ({slow})")
        if not rate > 0 or rate > 1e6:
            raise SimError(f"{name}: --rate must be more than 0 {fault.rate_unit}, "
                           f"not {rate:g}")
        return fault.record, float(rate)
    if fault.takes_ioc:
        target = ioc or str(fault.value)
        if target not in DOWNABLE_IOCS:
            raise SimError(f"ioc-down: no IOC '{target}' (IOCs: {', '.join(DOWNABLE_IOCS)})")
        return fault.record, target
    return fault.record, fault.value


async def inject(layout: SimLayout, name: str, ioc: str | None = None,
                 timeout: float = 2.0, rate: float | None = None
                 ) -> tuple[str, int | float | str]:
    """Inject a fault by CA put; returns (PV, value) written.

    The caller's process must have `layout.client_env` in its environment
    before its first CA call (see `ca`)."""
    record, value = plan(name, ioc, rate)
    pv = layout.control_pv(record)
    if not await ca.answers(pv, timeout):
        options = (f" --prefix {layout.prefix}" if layout.prefix else "") + (
            "" if layout.base_port == DEFAULT_BASE_PORT else f" --base-port {layout.base_port}")
        raise SimNotRunning(
            f"no simulated beamline answers at {layout.ioc('control').address} (PV {pv}); "
            f"is it running? Start one with `beamwatch sim run{options}`"
        )
    await ca.put(pv, value, timeout)
    return pv, value
