"""`SimBeamline`: the simulated MX beamline as one object, for tests and the demo.

    with SimBeamline(prefix="T1:", base_port=0, workdir=tmp_path) as sim:
        env = {**os.environ, **sim.env}        # for a CA client process
        sim.read([sim.pv("SR-DI-DCCT-01:SIGNAL")])
        sim.fault("vacuum-loss")
        sim.clear()

It starts the supervisor process (which starts the IOCs) and talks to it over
a pipe. It does no Channel Access itself: libca fixes its address list per
process at the first CA call, and the process that embeds a SimBeamline (a
test session, the demo) may already use CA with another list — or may need
to set this sim's list before its own first call. `read()` therefore asks the
supervisor, whose environment is the sim's.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from . import faults
from .ca import Reading
from .channel import SupervisorLink
from .errors import SimError, from_kind
from .layout import DEFAULT_BASE_PORT, SimLayout, free_base_port


class SimBeamline:
    """A running simulated beamline: five IOC processes and their supervisor.

    `base_port=0` picks free ports. `workdir` holds the IOC and supervisor logs;
    without one a temporary directory is used and removed by `stop()`.
    """

    def __init__(self, prefix: str = "", base_port: int = DEFAULT_BASE_PORT,
                 workdir: str | os.PathLike[str] | None = None, *, start_timeout: float = 60.0,
                 python: str | None = None, ispyb: str | os.PathLike[str] | None = None,
                 data_dir: str | os.PathLike[str] | None = None):
        self.layout = SimLayout(prefix, base_port or free_base_port())
        self._own_workdir = workdir is None
        self.workdir = Path(workdir) if workdir is not None else Path(
            tempfile.mkdtemp(prefix="beamwatch-sim-"))
        self.start_timeout = start_timeout
        # the ISPyB-like queue (SQLite) that `sql:` checks read; queue-stuck fills it
        self.ispyb_path = Path(ispyb).resolve() if ispyb else self.workdir / "ispyb.sqlite"
        # the images and detector log (sim/files.py); default: workdir/files
        self.data_dir = Path(data_dir) if data_dir is not None else self.workdir / "files"
        self.python = python or sys.executable
        self.startup: dict[str, Any] = {}
        self._proc: subprocess.Popen[str] | None = None
        self._link: SupervisorLink | None = None

    # --- where it is ----------------------------------------------------------------------

    @property
    def prefix(self) -> str:
        return self.layout.prefix

    @property
    def base_port(self) -> int:
        return self.layout.base_port

    @property
    def addresses(self) -> list[str]:
        """["127.0.0.1:5070", ...]: a config's `sources.ca.addr_list`."""
        return self.layout.addresses

    @property
    def addr_list(self) -> str:
        """The EPICS_CA_ADDR_LIST value that reaches every IOC of this sim."""
        return self.layout.addr_list

    @property
    def env(self) -> dict[str, str]:
        """The CA client environment for this sim (merge it into os.environ or a
        subprocess's env before the client's first CA call)."""
        return self.layout.client_env

    @property
    def iocs(self) -> list[str]:
        return [spec.name for spec in self.layout.iocs]

    def pv(self, name: str) -> str:
        """The full PV name: pv("SR-DI-DCCT-01:SIGNAL") -> prefix + name."""
        return self.layout.pv(name)

    def pv_names(self, ioc: str | None = None, *, helpers: bool = True) -> list[str]:
        """Every PV the sim serves (of one IOC); helpers=False: without sim-only records."""
        return self.layout.pv_names(ioc, helpers=helpers)

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    # --- life cycle -------------------------------------------------------------------------

    def start(self) -> SimBeamline:
        """Start, and return once every IOC answers a caget and the PVs have settled."""
        if self.running:
            return self
        self.workdir.mkdir(parents=True, exist_ok=True)
        log_path = self.workdir / "supervisor.log"
        cmd = [self.python, "-u", "-m", "beamwatch.sim.supervisor", "--prefix", self.prefix,
               "--base-port", str(self.base_port), "--workdir", str(self.workdir),
               "--ispyb", str(self.ispyb_path), "--data-dir", str(self.data_dir)]
        with log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True,
                bufsize=1, env={**os.environ, **self.env, "PYTHONUNBUFFERED": "1"},
            )
        self._link = SupervisorLink(self._proc)
        event = self._link.wait_event({"ready", "failed"}, self.start_timeout)
        if event is not None and event.get("event") == "ready":
            self.startup = event
            return self
        self._terminate()
        if event is None:
            raise SimError(f"the simulated beamline did not start in {self.start_timeout:.0f}s;"
                           f" see {log_path}")
        if event.get("event") == "failed":
            raise from_kind(event.get("kind"), event.get("message", "failed to start"))
        raise SimError(f"the sim supervisor exited while starting:\n{_tail(log_path)}")

    def stop(self) -> None:
        """Stop every IOC and the supervisor. Safe to call twice."""
        self._terminate()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def _terminate(self) -> None:
        proc, link = self._proc, self._link
        self._proc = self._link = None
        if proc is None:
            return
        if link is not None:
            link.close()  # EOF: the supervisor stops its IOCs and exits
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()  # its IOCs see EOF on their stdin and exit too
            proc.wait(timeout=5)
        if proc.stdout is not None:
            proc.stdout.close()

    def __enter__(self) -> SimBeamline:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- faults and readings ---------------------------------------------------------------

    def _request(self, op: str, timeout: float = 30.0, **args: Any) -> Any:
        if self._link is None or not self.running:
            raise SimError("the simulated beamline is not running; call start() first")
        return self._link.request(op, timeout, **args)

    def fault(self, name: str, *, ioc: str | None = None, rate: float | None = None) -> None:
        """Inject a named fault (see `beamwatch.sim.faults.FAULTS`). ioc-down returns once
        the IOC is stopped, clear once a stopped IOC answers again; a slow fault runs at
        `rate` (its unit: Fault.rate_unit), or at its realistic default."""
        faults.plan(name, ioc, rate)  # unknown names fail here, with the list of faults
        self._request("fault", name=name, ioc=ioc, rate=rate)

    def clear(self) -> None:
        """Every fault off, any stopped IOC back."""
        self.fault("clear")

    def read(self, pvs: list[str], timeout: float = 2.0) -> dict[str, Reading]:
        """Read PVs (full names) now: value, alarm severity, connected or not."""
        result = self._request("read", timeout=timeout + 30, pvs=list(pvs), ca_timeout=timeout)
        return {name: Reading.from_json(data) for name, data in result.items()}

    def status(self) -> dict[str, Any]:
        """Which IOC processes run, their ports, pids, logs, and which one is down."""
        return self._request("status")

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<SimBeamline prefix={self.prefix!r} {self.addr_list} {state}>"


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
