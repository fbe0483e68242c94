"""Where a simulated beamline lives: PV prefix, one port per IOC, the CA environments.

Five IOC processes on loopback, one port each, counted from a base port:

    base+0 machine   base+1 frontend   base+2 optics   base+3 endstation
    base+4 control (the sim's fault flags)

and base+5 (UDP only) for the sim's own CA beacon repeater (repeater.py),
base+6 (TCP only) for its HTTP status service (status_http.py), and
base+7 (TCP and UDP) for PVAccess: the endstation IOC, like an areaDetector
IOC, serves its records over PVA too (QSRV), for `pva:` checks with
`addr_list: [127.0.0.1:5077]`.
The default base is 5070: clear of the CA defaults (5064/5065) and of the PVA
ones (TCP 5075, UDP 5076; the repeater's UDP 5075 does not meet PVA's TCP
5075). A client reaches the beamline with

    EPICS_CA_ADDR_LIST="127.0.0.1:5070 127.0.0.1:5071 ... 127.0.0.1:5074"
    EPICS_CA_AUTO_ADDR_LIST=NO
    EPICS_CA_REPEATER_PORT=5075      (optional: fast reconnection after an IOC restart)

Every IOC must be listed: loopback has no broadcast, and a unicast search
sent to a port reaches only the one server bound there. The prefix is put in
front of every PV name, so that parallel test runs never answer each other's
searches; the demo uses no prefix, i.e. the real Diamond names.
"""

from __future__ import annotations

import os
import random
import re
import socket
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from . import dbfiles
from .errors import PortInUse, SimError
from .inventory import CONTROL_NAMESPACE, IOCS, DbLoad, IocDefinition, is_sim_helper

HOST = "127.0.0.1"
DEFAULT_BASE_PORT = 5070
_PREFIX = re.compile(r"^[A-Za-z0-9_:.\-]{0,24}$")
_RESERVED_TCP_UDP = {5064, 5065, 5075, 5076}  # CA server, CA repeater, PVA server, PVA UDP
_RESERVED_UDP = {5064, 5065, 5076}
_RESERVED_TCP = {5064, 5065, 5075}


@dataclass(frozen=True)
class IocSpec:
    """One IOC of one simulated beamline: definition plus prefix and port."""

    definition: IocDefinition
    prefix: str
    port: int
    addr_list: str  # every IOC of the sim, for this IOC's own CA links
    repeater_port: int
    pva_port: int  # used only when the definition serves PVA

    @property
    def name(self) -> str:
        return self.definition.name

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def heartbeat(self) -> str:
        return f"{self.prefix}{self.definition.ioc}:HEARTBEAT"

    def macros(self, load: DbLoad) -> dict[str, str]:
        return {"P": self.prefix, "IOC": self.definition.ioc, **load.macros}

    def pv_names(self) -> list[str]:
        return [name for load in self.definition.loads
                for _, name in dbfiles.record_names(load.db, self.macros(load))]

    def argv(self, python: str = sys.executable) -> list[str]:
        """The command that runs this IOC (see `beamwatch.sim.ioc`)."""
        cmd = [python, "-u", "-m", "beamwatch.sim.ioc", "--name", self.name]
        for load in self.definition.loads:
            cmd += ["-m", dbfiles.macro_text(self.macros(load)),
                    "-d", str(dbfiles.db_path(load.db))]
        return [*cmd, "--pva"] if self.definition.pva else cmd

    def env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """The IOC's environment: serve CA on its own port, on loopback only."""
        env = dict(os.environ if base is None else base)
        env.update(
            EPICS_CAS_SERVER_PORT=str(self.port),
            EPICS_CA_SERVER_PORT=str(self.port),
            EPICS_CAS_INTF_ADDR_LIST=HOST,
            EPICS_CAS_AUTO_BEACON_ADDR_LIST="NO",
            EPICS_CAS_BEACON_ADDR_LIST=HOST,
            EPICS_CAS_BEACON_PORT=str(self.repeater_port),
            # the IOC's own CA client, for the links to the other IOCs
            EPICS_CA_ADDR_LIST=self.addr_list,
            EPICS_CA_AUTO_ADDR_LIST="NO",
            EPICS_CA_REPEATER_PORT=str(self.repeater_port),
            PYTHONUNBUFFERED="1",
        )
        if self.definition.pva:  # on loopback only, TCP and UDP on one port number
            env.update(EPICS_PVAS_SERVER_PORT=str(self.pva_port),
                       EPICS_PVAS_BROADCAST_PORT=str(self.pva_port),
                       EPICS_PVAS_INTF_ADDR_LIST=HOST,
                       EPICS_PVAS_AUTO_BEACON_ADDR_LIST="NO",
                       EPICS_PVAS_BEACON_ADDR_LIST=HOST)
        return env


class SimLayout:
    """Prefix, ports and environments of one simulated beamline. Pure arithmetic."""

    def __init__(self, prefix: str = "", base_port: int = DEFAULT_BASE_PORT):
        if not _PREFIX.match(prefix):
            raise SimError(f"bad PV prefix {prefix!r}: use up to 24 of A-Z a-z 0-9 _ : . -")
        # the repeater (UDP); then the status service (TCP) and PVA (TCP and UDP)
        last = base_port + len(IOCS)
        if not 1024 <= base_port or last + 2 > 65535:
            raise SimError(f"base port {base_port}: the ports {base_port}..{last + 2} must lie "
                           "in 1024..65535")
        clash = (_RESERVED_TCP_UDP & {*range(base_port, last), last + 2}) | (
            _RESERVED_UDP & {last}) | (_RESERVED_TCP & {last + 1})
        if clash:
            raise SimError(f"base port {base_port}: ports {base_port}..{last + 2} include the "
                           f"EPICS default port(s) {sorted(clash)}")
        self.prefix = prefix
        self.base_port = base_port

    def __repr__(self) -> str:
        return f"SimLayout(prefix={self.prefix!r}, base_port={self.base_port})"

    @cached_property
    def iocs(self) -> tuple[IocSpec, ...]:
        return tuple(IocSpec(d, self.prefix, self.base_port + d.offset, self.addr_list,
                             self.repeater_port, self.pva_port) for d in IOCS)

    def ioc(self, name: str) -> IocSpec:
        for spec in self.iocs:
            if spec.name == name:
                return spec
        raise SimError(f"no IOC '{name}' (IOCs: {', '.join(s.name for s in self.iocs)})")

    @property
    def ports(self) -> list[int]:
        """The IOCs' ports (TCP and UDP each)."""
        return [self.base_port + d.offset for d in IOCS]

    @property
    def repeater_port(self) -> int:
        """The sim's beacon repeater (UDP only), right after the IOC ports."""
        return self.base_port + len(IOCS)

    @property
    def http_port(self) -> int:
        """The sim's HTTP status service (TCP only): GDA's /api/status."""
        return self.base_port + len(IOCS) + 1

    @property
    def pva_port(self) -> int:
        """PVAccess of the IOCs that serve it (TCP and UDP), after the status service."""
        return self.base_port + len(IOCS) + 2

    @property
    def pva_address(self) -> str:
        """The entry of a `pva` source's `addr_list:` (EPICS_PVA_ADDR_LIST)."""
        return f"{HOST}:{self.pva_port}"

    @property
    def status_url(self) -> str:
        return f"http://{HOST}:{self.http_port}"

    @property
    def addresses(self) -> list[str]:
        """The EPICS_CA_ADDR_LIST entries, e.g. for a config's `addr_list:`."""
        return [f"{HOST}:{port}" for port in self.ports]

    @property
    def addr_list(self) -> str:
        return " ".join(self.addresses)

    @property
    def client_env(self) -> dict[str, str]:
        """What a CA client needs in its environment to see this beamline (and only it)."""
        return {"EPICS_CA_ADDR_LIST": self.addr_list, "EPICS_CA_AUTO_ADDR_LIST": "NO",
                "EPICS_CA_REPEATER_PORT": str(self.repeater_port)}

    def pv(self, name: str) -> str:
        """A beamline PV name with this sim's prefix: pv("SR-DI-DCCT-01:SIGNAL")."""
        return f"{self.prefix}{name}"

    def control_pv(self, suffix: str) -> str:
        """A sim-control record: control_pv("FAULT:VACUUM")."""
        return f"{self.prefix}{CONTROL_NAMESPACE}:{suffix}"

    def pv_names(self, ioc: str | None = None, *, helpers: bool = True) -> list[str]:
        """Every record name (with prefix), of one IOC or all; `helpers=False` leaves
        out the records that only drive the simulation."""
        specs = [self.ioc(ioc)] if ioc else list(self.iocs)
        names = [n for spec in specs for n in spec.pv_names()]
        if not helpers:
            names = [n for n in names if not is_sim_helper(n[len(self.prefix):])]
        return names


# --- ports ---------------------------------------------------------------------------

_TCP_UDP = (socket.SOCK_STREAM, socket.SOCK_DGRAM)


def port_is_free(port: int, host: str = HOST, kinds: Iterable[int] = _TCP_UDP) -> bool:
    """`port` can be bound for each socket kind (a CA server needs TCP and UDP).

    TCP is probed with SO_REUSEADDR, as the CA server binds it: connections of
    an IOC that just exited linger in TIME_WAIT without taking the port, but a
    listening socket still does. UDP is probed without it, so that any bound
    socket counts as taken (CA servers share UDP ports with SO_REUSEADDR)."""
    for kind in kinds:
        with socket.socket(socket.AF_INET, kind) as s:
            if kind == socket.SOCK_STREAM:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((host, port))
            except OSError:
                return False
    return True


def _taken(layout: SimLayout) -> list[int]:
    taken = [p for p in layout.ports if not port_is_free(p)]
    if not port_is_free(layout.repeater_port, kinds=(socket.SOCK_DGRAM,)):
        taken.append(layout.repeater_port)
    if not port_is_free(layout.http_port, kinds=(socket.SOCK_STREAM,)):
        taken.append(layout.http_port)
    if not port_is_free(layout.pva_port):
        taken.append(layout.pva_port)
    return taken


def check_ports_free(layout: SimLayout) -> None:
    """Fail before starting anything: a CA server on a taken port does not fail, it
    shares the UDP port, so searches would reach the wrong process at random."""
    taken = _taken(layout)
    if taken:
        raise PortInUse(
            f"port(s) {', '.join(map(str, taken))} on {HOST} are in use (another simulated "
            "beamline?); stop it or choose another base port"
        )


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_base_port(attempts: int = 200) -> int:
    """A base port whose ports are all free now, below the kernel's ephemeral range
    so that no client socket grabs one of them meanwhile."""
    high = max(_ephemeral_low(), 12000) - len(IOCS) - 2
    rng = random.Random()
    for _ in range(attempts):
        base = rng.randrange(10000, high)
        try:
            layout = SimLayout("", base)
        except SimError:
            continue  # it would cover an EPICS default port
        if not _taken(layout):
            return base
    raise PortInUse(f"found no {len(IOCS) + 2} consecutive free ports on {HOST}")
