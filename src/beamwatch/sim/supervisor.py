"""The supervisor: owns the IOC processes of one simulated beamline.

It starts every IOC, says "ready" once each answers a caget and the beamline
has settled (every PV connected, none in alarm), restarts an IOC that dies on
its own (as procServ would), and is the hand behind the `ioc-down` fault.

How `ioc-down` reaches it: like every fault, it is a CA put, here of an IOC
name to $(P)BL04I-SIM:IOCDOWN on the sim-control IOC (which is never taken
down). The supervisor monitors that record: a name stops that IOC (SIGKILL,
like a crash, so clients see the circuit drop at once); "none", which `clear`
writes, starts it again. So any process that can caput can take an IOC down,
and no pid file, signal or socket of our own is needed. The record also
survives the supervisor's view of things: whoever asks, the IOC record says
what should be down.

The supervisor runs in its own process: in the foreground for
`beamwatch sim run`, or as `python -m beamwatch.sim.supervisor --stdio`, driven
by `SimBeamline` over a JSON-lines pipe (channel.py). Either way it is the
process that does the sim's Channel Access, with the sim's addresses in its
environment from the start (see ca.py for why that matters).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import ca, faults
from .errors import SimError
from .files import DataCollection
from .ispyb import IspybQueue
from .layout import IocSpec, SimLayout, check_ports_free
from .repeater import BeaconRepeater
from .status_http import StatusService

log = logging.getLogger("beamwatch.sim")

RESTART_DELAY = 2.0  # seconds before an IOC that died on its own is started again
Event = dict[str, Any]


class IocProcess:
    """One IOC child process. Its stdin is a pipe we never write: the IOC exits at
    EOF, so closing it is the clean stop, and our death (even by SIGKILL) is its."""

    def __init__(self, spec: IocSpec, workdir: Path, python: str):
        self.spec = spec
        self.workdir = workdir
        self.python = python
        self.log_path = workdir / f"{spec.name}.log"
        self.proc: asyncio.subprocess.Process | None = None
        self.expected_exit = False
        self.starts = 0

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def start(self) -> asyncio.subprocess.Process:
        argv = self.spec.argv(self.python)
        with self.log_path.open("ab") as out:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S")
            out.write(f"--- {stamp} start {self.name} on {self.spec.address}\n".encode())
            out.flush()
            self.proc = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.PIPE, stdout=out, stderr=asyncio.subprocess.STDOUT,
                env=self.spec.env(), cwd=self.workdir,
            )
        self.expected_exit = False
        self.starts += 1
        return self.proc

    async def stop(self, *, crash: bool = False, timeout: float = 5.0) -> None:
        """Crash: SIGKILL at once. Otherwise EOF on stdin, then SIGKILL after `timeout`."""
        proc = self.proc
        if proc is None:
            return
        self.expected_exit = True
        if proc.returncode is None:
            if crash:
                proc.kill()
            elif proc.stdin is not None:
                proc.stdin.close()
            try:
                async with asyncio.timeout(timeout):
                    await proc.wait()
            except TimeoutError:
                proc.kill()
                await proc.wait()
        if proc.stdin is not None:
            proc.stdin.close()

    def tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


@dataclass
class Startup:
    """What `start()` found: how many PVs, and any that had not settled."""

    pvs: int
    beamline_pvs: int
    seconds: float
    unsettled: list[str] = field(default_factory=list)


class Supervisor:
    """Starts, watches and stops the IOC processes of one layout (see the module doc).

    Runs on one asyncio loop, the one that made this process's CA context.
    `on_event` hears about IOCs going down, coming up and crashing."""

    def __init__(self, layout: SimLayout, workdir: Path, *, python: str = sys.executable,
                 on_event: Callable[[Event], None] | None = None, ispyb: Path | None = None,
                 data_dir: Path | None = None):
        self.layout = layout
        self.workdir = Path(workdir)
        # images and the detector log (sim/files.py): workdir/files unless told
        self.collection = DataCollection(data_dir or self.workdir / "files")
        self._flag_monitors: list[Any] = []
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.ispyb_path = Path(ispyb) if ispyb is not None else self.workdir / "ispyb.sqlite"
        self.ispyb: IspybQueue | None = None
        self.procs = {spec.name: IocProcess(spec, self.workdir, python) for spec in layout.iocs}
        self.on_event = on_event or (lambda event: None)
        self.down: str | None = None  # the IOC that the IOCDOWN record asks to be down
        self.applied: str | None = None  # the IOC that is down now, once `down` is applied
        self._down_lock = asyncio.Lock()
        self._running = False
        self._stopping = False
        self._monitor: Any = None
        self._queue_monitor: Any = None
        self.repeater = BeaconRepeater(layout.repeater_port)
        self.status_http = StatusService(layout.http_port)
        self._gda_monitor: Any = None
        self._tasks: set[asyncio.Task] = set()

    # --- life cycle ------------------------------------------------------------------

    async def start(self, timeout: float = 30.0, settle: float = 10.0) -> Startup:
        """Start every IOC; return once each answers and the PVs have settled."""
        check_ports_free(self.layout)
        t0 = time.monotonic()
        try:
            await self.repeater.start()
            await self.status_http.start()
            for p in self.procs.values():
                await p.start()
            await self._wait_answering(list(self.procs), t0 + timeout)
            ca.log_ca_exceptions()
            unsettled = await self._settle(settle)
        except BaseException:
            await self.stop()
            raise
        self._running = True
        for p in self.procs.values():
            self._watch(p)
        self._monitor = ca.monitor(self.layout.control_pv("IOCDOWN"), self._on_iocdown)
        self._start_ispyb()
        self._start_collection()
        self._gda_monitor = ca.monitor(self.layout.control_pv("FAULT:GDA"), self._on_gda)
        names = self.layout.pv_names()
        return Startup(len(names), len(self.layout.pv_names(helpers=False)),
                       time.monotonic() - t0, unsettled)

    def _start_collection(self) -> None:
        for flag in ("COLLECTION", "DETECTOR"):
            self._flag_monitors.append(ca.monitor(
                self.layout.control_pv(f"FAULT:{flag}"),
                lambda text, flag=flag: self.collection.on_flag(flag, text)))
        self.collection.start()

    async def stop(self) -> None:
        self._stopping = True
        for monitor in (self._monitor, self._queue_monitor, self._gda_monitor):
            if monitor is not None:
                monitor.close()
        self._monitor = self._queue_monitor = self._gda_monitor = None
        for monitor in self._flag_monitors:
            monitor.close()
        self._flag_monitors.clear()
        await self.collection.stop()
        self.status_http.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        ca.close()  # before the IOCs go, or libca reports each lost circuit
        await asyncio.gather(*(p.stop() for p in self.procs.values()), return_exceptions=True)
        self.repeater.close()

    async def _wait_answering(self, names: list[str], deadline: float) -> None:
        pending = list(names)
        while pending:
            for name in pending:
                p = self.procs[name]
                if not p.running:
                    raise SimError(f"IOC {name} exited while starting; the end of "
                                   f"{p.log_path}:\n{p.tail()}")
            beats = {self.procs[n].spec.heartbeat: n for n in pending}
            got = await ca.read(beats, timeout=1.0)
            pending = [n for pv, n in beats.items() if not got[pv].connected]
            if pending and time.monotonic() > deadline:
                where = ", ".join(f"{n} ({self.procs[n].spec.address})" for n in pending)
                raise SimError(f"IOC(s) {where} did not answer a caget in time; "
                               f"see the logs in {self.workdir}")

    async def _settle(self, timeout: float) -> list[str]:
        """Wait until every PV is connected and out of alarm: the CA links between
        the IOCs connect and the 1 s scans run once. Returns what did not settle."""
        names = self.layout.pv_names()
        deadline = time.monotonic() + timeout
        while True:
            readings = await ca.read(names, timeout=1.0)
            bad = sorted(n for n, r in readings.items() if r.in_alarm)
            if not bad or time.monotonic() > deadline:
                if bad:
                    log.warning("%d PVs not settled after %.0fs, e.g. %s", len(bad), timeout,
                                ", ".join(bad[:5]))
                return bad
            await asyncio.sleep(0.25)

    # --- children that die, IOCs taken down ------------------------------------------------

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _watch(self, p: IocProcess) -> None:
        if p.proc is not None:
            self._spawn(self._watch_one(p, p.proc))

    async def _watch_one(self, p: IocProcess, proc: asyncio.subprocess.Process) -> None:
        code = await proc.wait()
        if self._stopping or p.expected_exit or p.proc is not proc:
            return
        log.warning("IOC %s exited on its own (code %s); restarting in %.0fs; see %s",
                    p.name, code, RESTART_DELAY, p.log_path)
        self.on_event({"event": "ioc", "ioc": p.name, "state": "crashed", "code": code})
        await asyncio.sleep(RESTART_DELAY)
        if self._stopping or p.running or self.applied == p.name:
            return
        try:
            await p.start()
        except OSError as e:
            log.error("IOC %s could not be started again: %s", p.name, e)
            return
        self._watch(p)
        self.on_event({"event": "ioc", "ioc": p.name, "state": "up"})

    def _on_gda(self, text: str) -> None:
        self.status_http.fault = text == "On"

    def _on_iocdown(self, text: str) -> None:
        target = None if text in ("none", "") else text
        self.down = target
        if self._running and not self._stopping:
            self._spawn(self._apply_down(target))

    async def _apply_down(self, target: str | None) -> None:
        async with self._down_lock:
            if target != self.down or target == self.applied:
                return  # superseded by a later request, or nothing to do
            try:
                await self._bring_back(self.applied)
                self.applied = None
                if target is not None:
                    p = self.procs.get(target)
                    if p is None or not p.spec.definition.can_go_down:
                        log.warning("IOCDOWN names '%s', which cannot be taken down", target)
                        return
                    await p.stop(crash=True)
                    self.applied = target
                    log.info("IOC %s stopped (ioc-down)", target)
                    self.on_event({"event": "ioc", "ioc": target, "state": "down"})
            except (SimError, OSError) as e:  # reported here: nobody awaits this task
                log.error("ioc-down %s: %s", target or "none", e)

    async def _bring_back(self, name: str | None) -> None:
        if name is None:
            return
        p = self.procs[name]
        await p.start()
        self._watch(p)
        await self._wait_answering([name], time.monotonic() + 15)
        log.info("IOC %s started again", name)
        self.on_event({"event": "ioc", "ioc": name, "state": "up"})

    # --- the ISPyB-like queue (queue-stuck) ------------------------------------------------

    def _start_ispyb(self) -> None:
        self.ispyb = IspybQueue(self.ispyb_path)
        self._queue_monitor = ca.monitor(self.layout.control_pv("FAULT:QUEUE"),
                                         self._on_queue_fault)
        self._spawn(self._tick_ispyb())

    def _on_queue_fault(self, text: str) -> None:
        if self.ispyb is not None:
            self.ispyb.stuck = text == "On"

    async def _tick_ispyb(self) -> None:
        while self.ispyb is not None:
            await asyncio.sleep(1.0)
            try:
                self.ispyb.tick()
            except Exception as e:  # a locked or deleted file: the sim goes on
                log.error("ispyb queue %s: %s: %s", self.ispyb_path, type(e).__name__, e)

    # --- what clients ask --------------------------------------------------------------

    async def read(self, pvs: list[str], timeout: float = 2.0) -> dict[str, ca.Reading]:
        return await ca.read(pvs, timeout)

    async def fault(self, name: str, ioc: str | None = None, timeout: float = 20.0,
                    rate: float | None = None) -> Event:
        """Inject a fault; for ioc-down and clear, return once the IOC is down / back."""
        pv, value = await faults.inject(self.layout, name, ioc, rate=rate)
        if name in ("ioc-down", "clear"):
            want = str(value) if name == "ioc-down" else None
            deadline = time.monotonic() + timeout
            while self.applied != want or self._down_lock.locked():
                if time.monotonic() > deadline:
                    raise SimError(f"{name}: the IOCs did not reach the wanted state in "
                                   f"{timeout:.0f}s; see the logs in {self.workdir}")
                await asyncio.sleep(0.05)
        return {"pv": pv, "value": value}

    def status(self) -> Event:
        return {
            "down": self.applied,
            "iocs": {name: {"running": p.running, "port": p.spec.port, "starts": p.starts,
                            "pid": p.proc.pid if p.proc else None, "log": str(p.log_path)}
                     for name, p in self.procs.items()},
        }


# --- the two ways to run it ---------------------------------------------------------------


def describe(event: Event) -> str:
    if event.get("event") == "ioc":
        code = f" (exit code {event['code']})" if "code" in event else ""
        return f"IOC {event['ioc']}: {event['state']}{code}"
    return json.dumps(event)


async def run_foreground(layout: SimLayout, workdir: Path,
                         ready: Callable[[Startup], None],
                         echo: Callable[[str], None], ispyb: Path | None = None,
                         data_dir: Path | None = None) -> None:
    """`beamwatch sim run`: start, report, run until SIGTERM or Ctrl-C, stop cleanly."""
    os.environ.update(layout.client_env)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    sup = Supervisor(layout, workdir, on_event=lambda e: echo(describe(e)), ispyb=ispyb,
                     data_dir=data_dir)
    try:
        startup = await sup.start()
        ready(startup)
        await stop.wait()
        echo("stopping the simulated beamline…")
    finally:
        await sup.stop()


async def _run_stdio(layout: SimLayout, workdir: Path, ispyb: Path | None = None,
                     data_dir: Path | None = None) -> int:
    from .channel import StdioServer

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    server = StdioServer(stop)
    sup = Supervisor(layout, workdir, on_event=server.send, ispyb=ispyb, data_dir=data_dir)
    try:
        try:
            startup = await sup.start()
        except SimError as e:
            server.send({"event": "failed", "message": str(e), "kind": type(e).__name__})
            return 1
        server.send({"event": "ready", "pvs": startup.pvs, "beamline_pvs": startup.beamline_pvs,
                     "seconds": round(startup.seconds, 2), "unsettled": startup.unsettled,
                     "addr_list": layout.addr_list})
        await server.serve(sup)
        return 0
    finally:
        await sup.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m beamwatch.sim.supervisor",
        description="Supervise a simulated beamline, driven over stdin/stdout (JSON lines) "
                    "by beamwatch.sim.SimBeamline. For a terminal, use `beamwatch sim run`.")
    parser.add_argument("--prefix", default="")
    parser.add_argument("--base-port", type=int, required=True)
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--ispyb", type=Path, help="the ISPyB-like SQLite queue "
                        "(default: WORKDIR/ispyb.sqlite)")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="images and detector log (default: WORKDIR/files)")
    args = parser.parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    layout = SimLayout(args.prefix, args.base_port)
    os.environ.update(layout.client_env)  # before the first CA call of this process
    return asyncio.run(_run_stdio(layout, args.workdir, args.ispyb, args.data_dir))


if __name__ == "__main__":
    sys.exit(main())
