"""Real EPICS soft IOCs on loopback, for integration tests.

Why a port *pool*: libca reads EPICS_CA_ADDR_LIST once, when the process's
first CA context is created, and every test in one pytest process shares that
context. The address list therefore cannot follow each IOC. Instead
`ca_port_pool()` reserves POOL_SIZE ports once per process, lists all of them
in EPICS_CA_ADDR_LIST (with EPICS_CA_AUTO_ADDR_LIST=NO, so nothing is
broadcast beyond loopback), and each `Ioc` borrows a free port from the pool
and gives it back on close(). Call `ca_port_pool()` before any CA use: the
integration conftest does it in an autouse session fixture.

    with Ioc('record(ai, "$(P)temp") {field(VAL, "3")}') as ioc:
        pv = ioc.pv("temp")          # "$(P)" is a unique prefix per IOC
        ...
        ioc.kill()                   # like a crash: clients see a disconnect
        ioc.restart()                # same port, same PVs

`Ioc(..., pva=True)` serves PVAccess too (`python -m pvxslibs.ioc`: QSRV2 of
pvxs, installed with p4p) on a second port of the pool, used for both the TCP
server and the UDP search port; `ioc.pva_addr` is the client's addr list entry.

The IOC is `python -m epicscorelibs.ioc`, an interactive shell that exits on
EOF of its stdin: stdin is kept open as a pipe, so an IOC whose test process
dies (even by SIGKILL) exits on its own instead of lingering.
"""

from __future__ import annotations

import atexit
import collections
import importlib.util
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import weakref
from collections.abc import Mapping
from pathlib import Path

POOL_SIZE = 16
LOOPBACK = "127.0.0.1"
READY_LINE = "iocRun: All initialization complete"
PORT_TAKEN_LINE = "Configured TCP port was unavailable"

_pool: CaPortPool | None = None
_pool_lock = threading.Lock()
_live: weakref.WeakSet[Ioc] = weakref.WeakSet()


# --- availability -----------------------------------------------------------------


def missing_epics() -> str | None:
    """Why EPICS tests cannot run here, or None when they can."""
    missing = [m for m in ("epicscorelibs", "aioca") if importlib.util.find_spec(m) is None]
    if not missing:
        return None
    return (
        f"{' and '.join(missing)} not installed; the EPICS integration tests need them: "
        "pip install -e '.[test]' (or pip install epicscorelibs aioca)"
    )


def require_epicscorelibs() -> None:
    """Skip the calling test (or module) when EPICS is missing, but fail in CI (CI=true)."""
    import pytest

    reason = missing_epics()
    if reason is None:
        return
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"CI=true and {reason}", pytrace=False)
    pytest.skip(reason, allow_module_level=True)


def require_pvxs() -> None:
    """Skip (fail in CI) when pvxslibs, the PVA server of `Ioc(pva=True)`, is missing."""
    import pytest

    if importlib.util.find_spec("pvxslibs") is not None and \
            importlib.util.find_spec("p4p") is not None:
        return
    reason = "p4p/pvxslibs not installed; the PVA tests need them: pip install 'p4p>=4.1,<5'"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"CI=true and {reason}", pytrace=False)
    pytest.skip(reason, allow_module_level=True)


# --- the port pool ----------------------------------------------------------------


def _port_is_free(port: int, host: str = LOOPBACK) -> bool:
    """Both the TCP and the UDP port are bindable (a CA server needs both)."""
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        with socket.socket(socket.AF_INET, kind) as s:
            try:
                s.bind((host, port))
            except OSError:
                return False
    return True


def _candidate_range() -> range:
    """Ports below the kernel's ephemeral range, so no client socket takes one of them."""
    low = 32768
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        pass
    low = max(low, 12000)
    return range(10000, low)


def _reserve_ports(size: int, host: str) -> list[int]:
    rng = random.Random(os.getpid() ^ time.time_ns())
    candidates = _candidate_range()
    ports: list[int] = []
    for _ in range(size * 50):
        port = rng.choice(candidates)
        if port in ports or port in (5064, 5065, 5075, 5076):
            continue
        if _port_is_free(port, host):
            ports.append(port)
            if len(ports) == size:
                return ports
    raise RuntimeError(f"could not find {size} free TCP+UDP port pairs on {host}")


class CaPortPool:
    """A fixed set of ports, all in EPICS_CA_ADDR_LIST, lent to IOCs one at a time.

    One more port, `beacon_port`, is where the pool's IOCs send their beacons
    (EPICS_CAS_BEACON_PORT), so that no caRepeater of the host relays test
    beacons to other CA clients. No repeater is run: a client's reconnection
    after an IOC restart is paced by libca's disconnect governor (up to 10 s)
    whether beacons are heard or not.
    """

    def __init__(self, size: int = POOL_SIZE, host: str = LOOPBACK):
        self.host = host
        *ports, self.beacon_port = _reserve_ports(size + 1, host)
        self.ports: tuple[int, ...] = tuple(ports)
        self._free = collections.deque(self.ports)
        self._lock = threading.Lock()

    @property
    def addr_list(self) -> str:
        return " ".join(f"{self.host}:{p}" for p in self.ports)

    @property
    def env(self) -> dict[str, str]:
        """Client environment that reaches every IOC of the pool (and nothing else)."""
        return {
            "EPICS_CA_ADDR_LIST": self.addr_list,
            "EPICS_CA_AUTO_ADDR_LIST": "NO",
        }

    def acquire(self) -> int:
        """A free port; the least recently released one first."""
        with self._lock:
            for _ in range(len(self._free)):
                port = self._free.popleft()
                if _port_is_free(port, self.host):
                    return port
                self._free.append(port)  # something else holds it for now
        raise RuntimeError(
            f"no free port in the CA port pool ({len(self.ports)} ports): close IOCs "
            "when done (Ioc.close(), `with Ioc(...)`, or the ioc_factory fixture), "
            "or raise tests.support.ioc.POOL_SIZE"
        )

    def release(self, port: int) -> None:
        with self._lock:
            if port in self.ports and port not in self._free:
                self._free.append(port)


def _ca_context_exists() -> bool:
    catools = sys.modules.get("aioca._catools")
    return bool(catools is not None and catools._Context._ca_context)  # noqa: SLF001


def ca_port_pool(size: int = POOL_SIZE) -> CaPortPool:
    """The process's pool, created on first call, which also sets the CA client env."""
    global _pool
    with _pool_lock:
        if _pool is None:
            pool = CaPortPool(size)
            if _ca_context_exists() and os.environ.get("EPICS_CA_ADDR_LIST") != pool.addr_list:
                raise RuntimeError(
                    "Channel Access was used in this process before ca_port_pool() set "
                    "EPICS_CA_ADDR_LIST; request the ca_env fixture (or call "
                    "ca_port_pool()) before any CA use"
                )
            os.environ.update(pool.env)
            _pool = pool
        return _pool


# --- the IOC ------------------------------------------------------------------------


def _macro_text(macros: Mapping[str, str]) -> str:
    parts = []
    for key, value in macros.items():
        value = str(value)
        if any(c in value for c in ',="\' '):
            value = '"' + value.replace('"', '\\"') + '"'
        parts.append(f"{key}={value}")
    return ",".join(parts)


class Ioc:
    """One softIoc process serving `db_text` on a port of the pool.

    `macros` are expanded in the .db text; `P` defaults to a prefix unique to
    this IOC (`ioc.prefix`), so PV names never clash between IOCs of a session.
    """

    def __init__(
        self,
        db_text: str,
        macros: Mapping[str, str] | None = None,
        *,
        pool: CaPortPool | None = None,
        start: bool = True,
        timeout: float = 15.0,
        pva: bool = False,
    ):
        require_epicscorelibs()
        if pva:
            require_pvxs()
        self.pool = pool or ca_port_pool()
        self.host = self.pool.host
        self.macros = {"P": f"BWT{uuid.uuid4().hex[:8].upper()}:", **(macros or {})}
        self.prefix = self.macros["P"]
        self.timeout = timeout
        self.port = self.pool.acquire()
        self.pva_port = self.pool.acquire() if pva else None
        self._dir = Path(tempfile.mkdtemp(prefix="beamwatch-ioc-"))
        self.db_path = self._dir / "test.db"
        self.db_path.write_text(db_text)
        self._proc: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None
        self._lines: collections.deque[str] = collections.deque(maxlen=300)
        self._ready = threading.Event()
        self._closed = False
        _live.add(self)
        if start:
            self.start()

    # --- addresses --------------------------------------------------------------

    @property
    def addr(self) -> str:
        """"127.0.0.1:PORT", the entry of EPICS_CA_ADDR_LIST that reaches this IOC."""
        return f"{self.host}:{self.port}"

    @property
    def client_env(self) -> dict[str, str]:
        """Env for a client *subprocess* that should see only this IOC."""
        return {
            "EPICS_CA_ADDR_LIST": self.addr,
            "EPICS_CA_AUTO_ADDR_LIST": "NO",
        }

    @property
    def pva_addr(self) -> str:
        """"127.0.0.1:PORT": the PVA search address (EPICS_PVA_ADDR_LIST) of this IOC."""
        if self.pva_port is None:
            raise RuntimeError("this Ioc does not serve PVA (Ioc(..., pva=True))")
        return f"{self.host}:{self.pva_port}"

    def pv(self, name: str) -> str:
        return f"{self.prefix}{name}"

    @property
    def output(self) -> str:
        """The IOC's recent console output (for failure messages)."""
        return "".join(self._lines)

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    # --- life cycle -------------------------------------------------------------

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        h = self.host
        env.update(
            EPICS_CAS_SERVER_PORT=str(self.port),
            EPICS_CAS_INTF_ADDR_LIST=h,
            EPICS_CAS_AUTO_BEACON_ADDR_LIST="NO",
            EPICS_CAS_BEACON_ADDR_LIST=h,
            EPICS_CAS_BEACON_PORT=str(self.pool.beacon_port),
            # the IOC's own CA client (links) and its PVA server stay on loopback too
            EPICS_CA_ADDR_LIST=h,
            EPICS_CA_AUTO_ADDR_LIST="NO",
            EPICS_PVAS_INTF_ADDR_LIST=h,
            EPICS_PVAS_AUTO_BEACON_ADDR_LIST="NO",
            EPICS_PVAS_BEACON_ADDR_LIST=h,
            EPICS_PVA_ADDR_LIST=h,
            EPICS_PVA_AUTO_ADDR_LIST="NO",
            PYTHONUNBUFFERED="1",
        )
        if self.pva_port is not None:
            env.update(EPICS_PVAS_SERVER_PORT=str(self.pva_port),
                       EPICS_PVAS_BROADCAST_PORT=str(self.pva_port))
        return env

    def start(self) -> None:
        """Start the IOC and wait until it accepts CA connections on its port."""
        if self._closed:
            raise RuntimeError("this Ioc is closed")
        if self.running:
            return
        self._ready.clear()
        runner = "pvxslibs.ioc" if self.pva_port is not None else "epicscorelibs.ioc"
        cmd = [sys.executable, "-u", "-m", runner]
        cmd += ["-m", _macro_text(self.macros), "-d", str(self.db_path)]
        self._proc = subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE,  # held open: the IOC shell exits on EOF
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=self._env(),
            cwd=self._dir,
            text=True,
            bufsize=1,
        )
        self._reader = threading.Thread(
            target=self._read, args=(self._proc,), name=f"ioc-{self.port}", daemon=True
        )
        self._reader.start()
        self._wait_ready()

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self._lines.append(line)
            if READY_LINE in line:
                self._ready.set()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if self._proc is None or self._proc.poll() is not None:
                self._fail("exited during start")
            if PORT_TAKEN_LINE in self.output:
                self._fail(f"could not bind port {self.port}")
            if self._ready.is_set() and self._accepts(self.port) \
                    and (self.pva_port is None or self._accepts(self.pva_port)):
                return
            time.sleep(0.02)
        self._fail(f"not ready within {self.timeout}s")

    def _accepts(self, port: int) -> bool:
        try:
            with socket.create_connection((self.host, port), timeout=0.2):
                return True
        except OSError:
            return False

    def _fail(self, why: str) -> None:
        output = self.output
        self.kill()
        raise RuntimeError(f"softIoc on {self.addr} {why}; its output:\n{output}")

    def command(self, line: str) -> None:
        """Run an iocsh command (e.g. "dbpf $(P)x 3"), without waiting for it."""
        if not self.running or self._proc is None or self._proc.stdin is None:
            raise RuntimeError("the IOC is not running")
        self._proc.stdin.write(f"ioc({line!r})\n")
        self._proc.stdin.flush()

    def kill(self) -> None:
        """Kill the IOC process at once (like a crash); the port stays reserved."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.kill()
        try:
            proc.wait(timeout=10)
        finally:
            for stream in (proc.stdin, proc.stdout):
                if stream is not None:
                    try:
                        stream.close()
                    except OSError:
                        pass
            if self._reader is not None:
                self._reader.join(timeout=2)
                self._reader = None

    def restart(self) -> None:
        """Kill and start again on the same port, with the same PVs (initial values)."""
        self.kill()
        self.start()

    def close(self) -> None:
        """Kill the IOC and give its port back to the pool. Safe to call twice."""
        if self._closed:
            return
        self.kill()
        self._closed = True
        self.pool.release(self.port)
        if self.pva_port is not None:
            self.pool.release(self.pva_port)
        shutil.rmtree(self._dir, ignore_errors=True)
        _live.discard(self)

    def __enter__(self) -> Ioc:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<Ioc {self.prefix} on {self.addr} {state}>"


@atexit.register
def _kill_all() -> None:
    for ioc in list(_live):
        try:
            ioc.close()
        except Exception:  # noqa: BLE001 - best effort at interpreter exit
            pass
