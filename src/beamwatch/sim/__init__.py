"""The simulated MX beamline: real EPICS IOCs on loopback, for the demo and the tests.

A Diamond I04-like beamline — machine, front end, optics and endstation, a few
hundred PVs with the real names — served by EPICS base soft IOCs
(epicscorelibs), one process and one port each, plus a small sim-control IOC
whose records hold the injected faults. Values move by themselves (noise,
top-up sawtooth, a slowly boiling-off dewar) in the IOCs' own calc records,
and faults propagate by cause: a vacuum loss closes the front-end shutter,
which takes the beam from everything downstream.

    from beamwatch.sim import SimBeamline
    with SimBeamline(prefix="T1:", base_port=0) as sim:   # 0: pick free ports
        sim.fault("vacuum-loss")

Or from a shell: `beamwatch sim run`, `beamwatch sim fault vacuum-loss`,
`beamwatch sim faults`, `beamwatch sim clear`.

Module map: inventory (what the beamline is), layout (ports, prefix, env),
dbfiles (the .db templates), ioc (one IOC process), supervisor (owns the IOC
processes, applies ioc-down), repeater (CA beacons, for quick reconnects),
channel (the pipe to the supervisor), beamline (SimBeamline), faults (the
catalogue, injection by CA put), ca (the bit of Channel Access the sim uses),
cli (`beamwatch sim`), demo (`beamwatch demo`), errors.
"""

from .beamline import SimBeamline
from .ca import Reading
from .errors import PortInUse, SimError, SimNotRunning, UnknownFault
from .faults import FAULTS, Fault
from .layout import DEFAULT_BASE_PORT, HOST, SimLayout, free_base_port

__all__ = [
    "DEFAULT_BASE_PORT", "FAULTS", "HOST", "Fault", "PortInUse", "Reading", "SimBeamline",
    "SimError", "SimLayout", "SimNotRunning", "UnknownFault", "free_base_port",
]
