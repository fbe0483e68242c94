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
    value: int | str = 1
    lasts: float | None = None  # seconds until it clears itself; None: until `clear`
    takes_ioc: bool = False

    def to_json(self) -> dict[str, object]:
        return {"name": self.name, "summary": self.summary, "record": self.record,
                "lasts": self.lasts, "takes_ioc": self.takes_ioc}


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


def plan(name: str, ioc: str | None = None) -> tuple[str, int | str]:
    """The control record and value that inject fault `name`."""
    fault = get(name)
    if ioc is not None and not fault.takes_ioc:
        raise SimError(f"fault '{name}' takes no IOC; only ioc-down does")
    if fault.takes_ioc:
        target = ioc or str(fault.value)
        if target not in DOWNABLE_IOCS:
            raise SimError(f"ioc-down: no IOC '{target}' (IOCs: {', '.join(DOWNABLE_IOCS)})")
        return fault.record, target
    return fault.record, fault.value


async def inject(layout: SimLayout, name: str, ioc: str | None = None,
                 timeout: float = 2.0) -> tuple[str, int | str]:
    """Inject a fault by CA put; returns (PV, value) written.

    The caller's process must have `layout.client_env` in its environment
    before its first CA call (see `ca`)."""
    record, value = plan(name, ioc)
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
