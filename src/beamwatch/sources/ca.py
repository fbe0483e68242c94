"""The Channel Access source: PVs served by EPICS IOCs, on libca.

One channel and one DBR_TIME subscription per PV (value, IOC timestamp, alarm
severity and status), enums as their strings, disconnects reported. The
monitors are `libca.Monitors` (our own thin layer: bulk hand-off from libca's
threads, decoding on the loop; decision 0013); `caget`-style reads still go
through aioca, in the same CA context. The samples of one hand-off go to the
sink as one list.

Process-wide facts of libca that shape this module:

- libca reads EPICS_CA_ADDR_LIST, EPICS_CA_AUTO_ADDR_LIST and
  EPICS_CA_MAX_ARRAY_BYTES once, when the process's CA context is created
  (first CA use). A source's `addr_list` is written to the environment before
  that; asking for a different list afterwards is a SourceUnavailable.
- after an IOC restart libca searches the lost channels again on its own
  (its disconnect governor runs every 10 s) and re-creates the monitors; the
  first value after that marks the PV connected again.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import time
from collections.abc import Callable, Iterable
from typing import Any

from ..clock import Clock, SystemClock
from ..config.schema import SourceConfig
from ..model import Sample, Severity
from .base import Sink, SourceUnavailable, Subscriptions

try:
    import aioca
    from aioca import _catools
    from epicscorelibs.ca import cadef

    from . import libca
except ImportError as error:  # pragma: no cover - depends on the installation
    _IMPORT_ERROR: ImportError | None = error
else:
    _IMPORT_ERROR = None

log = logging.getLogger("beamwatch.sources.ca")

OPEN_STEP = 2_500  # channels created between looks at the event loop (10k: ~0.6 s)
_SEVERITIES = (Severity.OK, Severity.MINOR, Severity.MAJOR, Severity.INVALID)

# The addr list a CaSource wrote into the environment (None: none did yet).
_claimed_addr_list: tuple[str, ...] | None = None


# --- the libca context ------------------------------------------------------------------


def context_exists() -> bool:
    """True once this process has a CA context (libca has read its environment)."""
    if _IMPORT_ERROR is not None:
        return False
    if getattr(getattr(_catools, "_Context", None), "_ca_context", None):
        return True
    return bool(cadef.ca_current_context())  # restype patched to c_void_p by aioca


def _env_addr_list() -> tuple[str, ...]:
    return tuple(os.environ.get("EPICS_CA_ADDR_LIST", "").split())


def configure_environment(addr_list: Iterable[str] | None,
                          max_array_bytes: int | None = None) -> None:
    """Write the CA client environment for `addr_list`, or check the one in force.

    Before the CA context exists this sets EPICS_CA_ADDR_LIST (and
    EPICS_CA_AUTO_ADDR_LIST=NO). After, libca will not read it again, so a
    different list is refused with SourceUnavailable.
    """
    global _claimed_addr_list
    if addr_list is not None:
        wanted = tuple(str(a).strip() for a in addr_list if str(a).strip())
        if not wanted:
            raise SourceUnavailable(
                "addr_list is empty: list at least one IOC or gateway address (host or "
                "host:port), or leave addr_list out to use EPICS_CA_ADDR_LIST"
            )
        if context_exists():
            auto = os.environ.get("EPICS_CA_AUTO_ADDR_LIST", "YES").upper()
            if _env_addr_list() != wanted or auto != "NO":
                raise SourceUnavailable(
                    f"addr_list {' '.join(wanted)!r} was asked for, but Channel Access is "
                    f"already running in this process with EPICS_CA_ADDR_LIST="
                    f"{os.environ.get('EPICS_CA_ADDR_LIST', '')!r} "
                    f"EPICS_CA_AUTO_ADDR_LIST={auto}; libca reads them once per process: "
                    "give every CA source the same addr_list (or none) and restart beamwatch"
                )
        else:
            if _claimed_addr_list is not None and _claimed_addr_list != wanted:
                raise SourceUnavailable(
                    f"addr_list {' '.join(wanted)!r} conflicts with addr_list "
                    f"{' '.join(_claimed_addr_list)!r} of another CA source: one process has "
                    "one Channel Access address list; give every CA source the same one"
                )
            os.environ["EPICS_CA_ADDR_LIST"] = " ".join(wanted)
            os.environ["EPICS_CA_AUTO_ADDR_LIST"] = "NO"
            _claimed_addr_list = wanted
    if max_array_bytes is not None:
        current = os.environ.get("EPICS_CA_MAX_ARRAY_BYTES")
        if not context_exists():
            os.environ["EPICS_CA_MAX_ARRAY_BYTES"] = str(int(max_array_bytes))
        elif current != str(int(max_array_bytes)):
            log.warning("EPICS_CA_MAX_ARRAY_BYTES cannot change once Channel Access runs",
                        extra={"wanted": max_array_bytes, "in_force": current})


# --- values ---------------------------------------------------------------------------


def _array(value: Any) -> Any:
    """A waveform: a tuple of numbers or strings; a char array is a str."""
    if value.dtype.itemsize == 1 and value.dtype.kind == "u":  # DBF_CHAR: text
        return value.tobytes().split(b"\0", 1)[0].decode("utf-8", "replace")
    return tuple(value.tolist())


def _sample_factory() -> Callable[..., Sample]:
    """Sample(...) without the frozen dataclass __init__ (9 object.__setattr__
    calls, about half of this source's cost per update): the slots are filled
    through their descriptors. The result is an ordinary, still frozen Sample.
    Falls back to the constructor if Sample's fields ever change."""
    names = ("address", "value", "timestamp", "received", "connected", "severity",
             "status", "server", "error")
    if tuple(f.name for f in dataclasses.fields(Sample)) != names \
            or not all(hasattr(Sample.__dict__.get(n), "__set__") for n in names):
        return Sample
    a, v, t, r, c, sv, st, sr, e = (Sample.__dict__[n].__set__ for n in names)
    new = object.__new__

    def make(address: str, value: Any, timestamp: float, received: float, connected: bool,
             severity: Severity, status: int, server: str | None, error: str | None) -> Sample:
        s = new(Sample)
        a(s, address)
        v(s, value)
        t(s, timestamp)
        r(s, received)
        c(s, connected)
        sv(s, severity)
        st(s, status)
        sr(s, server)
        e(s, error)
        return s

    return make


_new_sample = _sample_factory()


class _Pv:
    """What the source knows about one subscribed PV."""

    __slots__ = ("address", "handle", "connected", "server", "ever_connected", "opened_at")

    def __init__(self, address: str):
        self.address = address
        self.handle: int | None = None  # its channel in the Monitors
        self.connected = False
        self.server: str | None = None
        self.ever_connected = False
        self.opened_at = 0.0  # monotonic time its channel was created


class CaSource(Subscriptions):
    """EPICS Channel Access PVs as Samples (see the module doc)."""

    _pv_class = _Pv

    @classmethod
    def from_config(cls, name: str, config, clock: Clock | None = None) -> CaSource:
        """The source `name` of a whole config (its `sources.NAME` settings, if any)."""
        return cls(name, config.sources.get(name), clock)

    def __init__(self, name: str = "ca", config: SourceConfig | None = None,
                 clock: Clock | None = None, *, all_updates: bool = False,
                 max_array_bytes: int | None = None):
        if _IMPORT_ERROR is not None:
            raise SourceUnavailable(
                f"source '{name}': Channel Access needs aioca and epicscorelibs "
                f"({_IMPORT_ERROR}); install them with: pip install 'aioca>=2.1' epicscorelibs"
            )
        self.name = name
        self.config = config or SourceConfig(kind="ca")
        self.clock = clock or SystemClock()
        self.connect_timeout = float(self.config.connect_timeout)
        # all_updates=False: when the loop falls behind, updates of one PV waiting
        # together are merged into the newest (counted in stats()["merged"])
        self.all_updates = all_updates
        configure_environment(self.config.addr_list, max_array_bytes)
        self._pvs: dict[str, _Pv] = {}
        self._by_handle: dict[int, _Pv] = {}
        self._batch: list[Sample] = []
        self._now = self.clock.now
        self._sink: Sink | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._monitors: Any = None
        self._started: float | None = None  # monotonic time of start(), until all connected
        # PVs not connected yet and not yet reported as never connected, and when the
        # last of the others connected: while they keep coming in, none is reported
        self._waiting: set[_Pv] = set()
        self._last_news = 0.0
        self._watch: asyncio.TimerHandle | None = None
        self._flush_handle: asyncio.Handle | None = None
        self.connected_count = 0
        self.updates = 0  # values received (not disconnects, not errors)
        self.events = 0  # disconnects, timeouts and bad values received
        self.batches = 0  # sink calls

    # --- the Source interface ---------------------------------------------------------

    async def start(self, sink: Sink) -> None:
        if await self._take_over(sink):  # connected while standing by (warm)
            return
        if self._sink is not None:
            raise RuntimeError(f"source '{self.name}' is already started")
        configure_environment(self.config.addr_list)  # again: another source may have run
        self._loop = asyncio.get_running_loop()
        aioca.get_channel_infos()  # creates the CA context now, with our environment
        self._monitors = libca.Monitors(self._loop, self._on_events, self.all_updates)
        self._sink = sink
        self._started = time.monotonic()
        for i, pv in enumerate(list(self._pvs.values())):
            if i and not i % OPEN_STEP:  # 100k channels held the loop (the lease's) ~1 s
                await asyncio.sleep(0)
            if self._pvs.get(pv.address) is pv and pv.handle is None and self._sink:
                self._open(pv)
        log.info("%d PVs subscribed in %.2f s", len(self._pvs), time.monotonic() - self._started)

    async def stop(self) -> None:
        """Close every subscription; nothing reaches the sink after this returns."""
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None
        self._close_all()
        if self._monitors is not None:
            self._monitors.shut()

    # --- status -----------------------------------------------------------------------

    @property
    def addresses(self) -> list[str]:
        return list(self._pvs)

    def stats(self) -> dict[str, int]:
        total = len(self._pvs)
        return {
            "subscribed": total,
            "connected": self.connected_count,
            "disconnected": total - self.connected_count,
            "updates": self.updates,
            "events": self.events,
            "batches": self.batches,
            "merged": self._monitors.merged if self._monitors is not None else 0,
        }

    def server_of(self, address: str) -> str | None:
        pv = self._pvs.get(address)
        return pv.server if pv is not None else None

    # --- subscriptions ------------------------------------------------------------------

    def _open(self, pv: _Pv) -> None:
        try:
            pv.handle = self._monitors.open(pv.address)
        except Exception as error:  # e.g. a name libca refuses (too long)
            pv.handle = None
            log.warning("cannot monitor PV", extra={"pv": pv.address, "reason": str(error)})
            self._emit(pv, f"cannot monitor: {error}")
            return
        self._by_handle[pv.handle] = pv
        pv.opened_at = self._last_news = time.monotonic()
        if not pv.ever_connected:
            self._waiting.add(pv)
            if self._watch is None:
                self._watch = self._loop.call_later(1.0, self._never_connected)

    def _close(self, pv: _Pv) -> None:
        self._waiting.discard(pv)
        handle, pv.handle = pv.handle, None
        if pv.connected:
            pv.connected = False
            self.connected_count -= 1
        if handle is not None:
            self._by_handle.pop(handle, None)
            try:
                self._monitors.close(handle)
            except Exception:  # a libca error: the channel is gone anyway
                log.debug("closing a channel failed", exc_info=True)

    def settling(self) -> bool:
        """Still connecting: some PVs have not connected yet, and others did lately
        (100k PVs take tens of seconds to connect: a PV late in that wave is not
        missing). "Lately" is connect_timeout plus a second per 1000 PVs waiting: with
        many searches out libca backs off and connections come in bursts; a few dead
        PVs are reported after connect_timeout. Updates not yet handed to the loop may
        be connections too. The engine does not judge a check with no value yet while
        its source is settling."""
        if not self._waiting:
            return False
        if self._monitors is not None and self._monitors.pending:
            return True
        quiet_for = time.monotonic() - self._last_news
        return quiet_for < self.connect_timeout + len(self._waiting) / 1000

    def _never_connected(self) -> None:
        """Once a second while PVs wait: those waiting longer than connect_timeout are
        reported once (libca keeps searching), unless the others are still coming in."""
        self._watch = None
        if self._sink is None or not self._waiting:
            return
        if not self.settling():
            now = time.monotonic()
            late = [pv for pv in self._waiting if now - pv.opened_at >= self.connect_timeout]
            for pv in late:
                self._waiting.discard(pv)
                self._emit(pv, "never connected: no IOC answered within "
                               f"{self.connect_timeout:g}s")
        if self._waiting:
            self._watch = self._loop.call_later(1.0, self._never_connected)

    # --- the hot path -------------------------------------------------------------------

    def _on_events(self, events: list[tuple]) -> None:
        """Monitors' hand-off, on the loop's thread: values become Samples, connection
        events and errors samples that say so; then one sink call."""
        by_handle = self._by_handle
        decode = libca.decode
        new_sample = _new_sample
        severities = _SEVERITIES
        received = self._now()  # one clock read per hand-off, not per update
        batch = self._batch
        updates = 0
        for handle, kind, count, data in events:
            pv = by_handle.get(handle)
            if pv is None:  # closed meanwhile
                continue
            if kind < 0:
                self._on_connection_event(pv, kind, count)
                continue
            try:
                value, stamp, severity, status = decode(kind, count, data)
                if not pv.connected:  # the first value of a (re)connection
                    self._connected(pv, handle)
                batch.append(new_sample(pv.address, value, stamp, received, True,
                                        severities[severity] if 0 <= severity <= 3
                                        else Severity.INVALID, status, pv.server, None))
                updates += 1
            except Exception as error:
                self._on_bad_value(pv, error)
        self.updates += updates
        self._flush()

    def _connected(self, pv: _Pv, handle: int) -> None:
        pv.connected = True
        if not pv.ever_connected:
            self._waiting.discard(pv)
            self._last_news = time.monotonic()
        pv.ever_connected = True
        self.connected_count += 1
        pv.server = self._monitors.host(handle)
        if self.connected_count == len(self._pvs) and self._started is not None:
            log.info("all %d PVs connected %.2f s after the start", self.connected_count,
                     time.monotonic() - self._started)
            self._started = None  # said once

    # --- the slow path: connections, errors ---------------------------------------------

    def _on_connection_event(self, pv: _Pv, kind: int, code: int) -> None:
        if kind == libca.CONNECTED:  # the value follows; it marks the PV connected
            return
        if pv.connected:
            pv.connected = False
            self.connected_count -= 1
        if kind == libca.DISCONNECTED:
            self._emit(pv, "disconnected")
        else:  # FAILED: libca refused or could not deliver an update (access, size...)
            log.warning("monitor error", extra={"pv": pv.address, "reason": libca.message(code)})
            self._emit(pv, f"monitor error: {libca.message(code)}")

    def _on_bad_value(self, pv: _Pv, error: Exception) -> None:
        """A value we cannot decode: a sample that says so, never an exception."""
        self.events += 1
        log.warning("bad value", extra={"pv": pv.address, "reason": repr(error)})
        now = self._now()
        self._batch.append(Sample(pv.address, None, now, now, pv.connected, Severity.INVALID,
                                  0, pv.server, f"bad value: {error}"))

    def _emit(self, pv: _Pv, error: str) -> None:
        """A sample without a value: disconnected, never connected, monitor failed."""
        self.events += 1
        now = self._now()
        self._batch.append(Sample(pv.address, None, now, now, False, Severity.INVALID, 0,
                                  pv.server, error))
        if self._flush_handle is None and self._loop is not None:
            self._flush_handle = self._loop.call_soon(self._scheduled_flush)


async def get_once(pv: str, timeout: float = 2.0) -> tuple[Sample, str]:
    """Read a PV now, like caget: (the value with its time and severity, its units).
    Raises LookupError with the reason when no IOC answers within `timeout`."""
    try:
        value, ctrl = await asyncio.gather(
            aioca.caget(pv, format=aioca.FORMAT_TIME, timeout=timeout),
            aioca.caget(pv, format=aioca.FORMAT_CTRL, timeout=timeout))
    except aioca.CANothing as e:
        raise LookupError(f"{pv}: no IOC answered within {timeout:g}s ({e})") from None
    if isinstance(value, int) and getattr(ctrl, "enums", None):
        enums = ctrl.enums
        value_shown: Any = enums[value] if 0 <= value < len(enums) else int(value)
    else:
        value_shown = _array(value) if hasattr(value, "dtype") else value
    sample = Sample(pv, value_shown, float(getattr(value, "timestamp", 0.0) or 0.0),
                    time.time(), True, Severity(min(int(getattr(value, "severity", 0)), 3)))
    return sample, str(getattr(ctrl, "units", "") or "")
