"""The Channel Access source: PVs served by EPICS IOCs, through aioca (libca).

One `camonitor` per PV, FORMAT_TIME (value, IOC timestamp, alarm severity and
status), enums as their strings, disconnects reported. aioca already turns
libca's callbacks (on libca's own threads) into one loop wake-up per burst;
this source adds a second coalescing step: the samples of one loop iteration
go to the sink as one list, flushed by `loop.call_soon` when the first sample
of a batch arrives. Why aioca and what we add: docs/decisions/0001.

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
    from aioca.types import AugmentedValue  # noqa: F401 - fails early on a broken aioca
    from epicscorelibs.ca import cadef, dbr
except ImportError as error:  # pragma: no cover - depends on the installation
    _IMPORT_ERROR: ImportError | None = error
else:
    _IMPORT_ERROR = None

log = logging.getLogger("beamwatch.sources.ca")

WATCH_EVERY = 5.0  # seconds between checks for subscriptions aioca closed on its own
RESUBSCRIBE_AFTER = 60.0  # seconds before such a subscription is opened again
# A batch this big goes to the sink at once, without waiting for the loop's next
# iteration: when updates come faster than they are handled, aioca drains its
# queue in one long callback and the loop does not get back to our flush.
MAX_BATCH = 5000

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


def _bytes(value: bytes) -> str:
    return bytes(value).split(b"\0", 1)[0].decode("utf-8", "replace")


# Type of aioca's augmented value -> conversion to a plain Python value.
_CONVERT: dict[type, Callable[[Any], Any]] = {}
if _IMPORT_ERROR is None:
    _CONVERT = {dbr.ca_float: float, dbr.ca_int: int, dbr.ca_str: str, dbr.ca_array: _array}
    _ca_bytes = getattr(dbr, "ca_bytes", None)  # (ca_unicode is ca_str on Python 3)
    if isinstance(_ca_bytes, type) and issubclass(_ca_bytes, bytes):
        _CONVERT[_ca_bytes] = _bytes


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

    __slots__ = ("address", "subscription", "connected", "server", "ever_connected",
                 "closed_at", "ours")

    def __init__(self, address: str):
        self.address = address
        self.subscription: Any = None
        self.connected = False
        self.server: str | None = None
        self.ever_connected = False
        self.closed_at: float | None = None  # monotonic time aioca was seen to close it
        self.ours = False  # a subscription we opened and have not closed


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
        # all_updates=False: updates of one PV that arrive while the loop is busy
        # are merged into the newest (aioca counts them in dropped_callbacks).
        self.all_updates = all_updates
        configure_environment(self.config.addr_list, max_array_bytes)
        self._pvs: dict[str, _Pv] = {}
        self._batch: list[Sample] = []
        self._received = 0.0
        self._now = self.clock.now
        self._sink: Sink | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._flush_handle: asyncio.Handle | None = None
        self._watchdog: asyncio.Task[None] | None = None
        self.connected_count = 0
        self.updates = 0  # values received (not disconnects, not errors)
        self.events = 0  # disconnects, timeouts and bad values received
        self.batches = 0  # sink calls

    # --- the Source interface ---------------------------------------------------------

    async def start(self, sink: Sink) -> None:
        if self._sink is not None:
            raise RuntimeError(f"source '{self.name}' is already started")
        configure_environment(self.config.addr_list)  # again: another source may have run
        self._loop = asyncio.get_running_loop()
        self._sink = sink
        aioca.get_channel_infos()  # creates the CA context now, with our environment
        for pv in self._pvs.values():
            self._open(pv)
        self._watchdog = self._loop.create_task(self._watch(), name=f"ca-watch-{self.name}")

    async def stop(self) -> None:
        """Close every subscription; nothing reaches the sink after this returns."""
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        self._close_all()

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
            "merged": sum(getattr(pv.subscription, "dropped_callbacks", 0)
                          for pv in self._pvs.values()),
        }

    def server_of(self, address: str) -> str | None:
        pv = self._pvs.get(address)
        return pv.server if pv is not None else None

    # --- subscriptions ------------------------------------------------------------------

    def _open(self, pv: _Pv) -> None:
        pv.closed_at = None
        try:
            pv.subscription = aioca.camonitor(
                pv.address, self._callback(pv), format=dbr.FORMAT_TIME,
                datatype=dbr.DBR_ENUM_STR, notify_disconnect=True,
                connect_timeout=self.connect_timeout, all_updates=self.all_updates,
            )
            pv.ours = True
        except Exception as error:  # e.g. a name libca refuses (too long)
            pv.subscription = None
            pv.ours = False
            pv.closed_at = time.monotonic()
            log.warning("cannot monitor PV", extra={"pv": pv.address, "reason": str(error)})
            self._emit(pv, f"cannot monitor: {error}")

    def _close(self, pv: _Pv) -> None:
        sub, pv.subscription = pv.subscription, None
        pv.ours = False
        if pv.connected:
            pv.connected = False
            self.connected_count -= 1
        if sub is not None:
            try:
                sub.close()
            except Exception:  # a closed loop, a libca error: the subscription is gone anyway
                log.debug("closing a subscription failed", exc_info=True)

    async def _watch(self) -> None:
        """aioca closes a subscription by itself when libca reports a bad update
        (an array over EPICS_CA_MAX_ARRAY_BYTES, lost read access...): say so
        with a sample, and open it again later."""
        while True:
            await asyncio.sleep(WATCH_EVERY)
            try:
                self._check_subscriptions()
            except Exception:  # keep watching whatever happened
                log.exception("watching CA subscriptions failed", extra={"source": self.name})

    def _check_subscriptions(self) -> None:
        now = time.monotonic()
        for pv in list(self._pvs.values()):
            sub = pv.subscription
            if pv.ours and sub is not None and sub.state == sub.CLOSED:
                pv.ours = False
                pv.closed_at = now
                if pv.connected:
                    pv.connected = False
                    self.connected_count -= 1
                self._emit(pv, "monitor failed (bad update from the IOC, see the log);"
                           f" retrying in {RESUBSCRIBE_AFTER:g}s")
            elif not pv.ours and pv.closed_at is not None \
                    and now - pv.closed_at >= RESUBSCRIBE_AFTER:
                self._open(pv)

    # --- the hot path -------------------------------------------------------------------

    def _callback(self, pv: _Pv) -> Callable[[Any], None]:
        """aioca's callback for one PV: called on the loop's thread, must not raise
        (aioca would close the subscription)."""
        convert = _CONVERT
        severities = _SEVERITIES
        address = pv.address
        max_batch = MAX_BATCH
        new_sample = _new_sample

        def on_value(value: Any) -> None:
            try:
                conv = convert.get(value.__class__)
                if conv is None or not pv.connected:
                    self._on_event(pv, value)
                    return
                batch = self._batch
                if not batch:
                    self._start_batch()
                batch.append(new_sample(address, conv(value), value.timestamp, self._received,
                                        True, severities[value.severity], value.status,
                                        pv.server, None))
                self.updates += 1
                if len(batch) >= max_batch:
                    self._flush()
            except Exception as error:
                self._on_bad_value(pv, value, error)

        return on_value

    def _start_batch(self) -> None:
        self._received = self._now()  # one clock read per batch, not per update
        if self._flush_handle is None and self._loop is not None and self._sink is not None:
            self._flush_handle = self._loop.call_soon(self._scheduled_flush)

    # --- the slow path: connections, errors ---------------------------------------------

    def _on_event(self, pv: _Pv, value: Any) -> None:
        if pv.subscription is None:  # closed meanwhile
            return
        if getattr(value, "ok", True) is False:  # aioca.CANothing
            code = getattr(value, "errorcode", None)
            if code == cadef.ECA_TIMEOUT and not pv.ever_connected:
                error = f"never connected: no IOC answered within {self.connect_timeout:g}s"
            elif code == cadef.ECA_DISCONN:
                error = "disconnected"
            else:
                error = str(value)
            if pv.connected:
                pv.connected = False
                self.connected_count -= 1
            self._emit(pv, error)
            return
        conv = _CONVERT.get(value.__class__)
        if conv is None:
            raise TypeError(f"unexpected value type {type(value).__name__} from aioca")
        if not pv.connected:  # the first value of a (re)connection
            pv.connected = True
            pv.ever_connected = True
            self.connected_count += 1
            pv.server = self._server(pv)
        severity = value.severity
        if not 0 <= severity <= 3:
            severity = Severity.INVALID
        self.updates += 1
        self._append(Sample(pv.address, conv(value), value.timestamp, self._now(), True,
                            _SEVERITIES[severity], value.status, pv.server, None))

    def _on_bad_value(self, pv: _Pv, value: Any, error: Exception) -> None:
        """A value we cannot convert: a sample that says so, never an exception."""
        try:
            self.events += 1
            log.warning("bad value", extra={"pv": pv.address, "reason": repr(error)})
            self._append(Sample(pv.address, None, getattr(value, "timestamp", self._now()),
                                self._now(), pv.connected, Severity.INVALID,
                                getattr(value, "status", 0), pv.server,
                                f"bad value: {error}"))
        except Exception:  # pragma: no cover - last line of defence for libca's sake
            log.exception("cannot report a bad value", extra={"pv": pv.address})

    def _server(self, pv: _Pv) -> str | None:
        try:
            return cadef.ca_host_name(pv.subscription.channel)
        except Exception:
            return None

    def _emit(self, pv: _Pv, error: str) -> None:
        """A sample without a value: disconnected, never connected, monitor failed."""
        self.events += 1
        now = self._now()
        self._append(Sample(pv.address, None, now, now, False, Severity.INVALID, 0,
                            pv.server, error))

    def _append(self, sample: Sample) -> None:
        batch = self._batch
        if not batch:
            self._start_batch()
        batch.append(sample)
        if len(batch) >= MAX_BATCH:
            self._flush()


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
