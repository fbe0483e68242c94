"""The PVAccess source: PVs served over pvAccess (QSRV in an IOC, p4p servers...), via p4p.

One monitor per PV on p4p's asyncio client. Values are read from the whole
structure (p4p's `nt=False`): NTScalar's `value`, NTEnum's label (the choice at
`value.index`, so checks compare by string as for CA enums), arrays as tuples,
`alarm.severity` and `timeStamp`. Disconnects become samples with
`connected=False`, so `disconnect_grace` works as for CA. Like the CA source,
the samples of one loop iteration go to the sink as one list.

Unlike libca, every p4p client Context has its own configuration: each PVA
source with an `addr_list` gets exactly that list (EPICS_PVA_ADDR_LIST, no
auto list, the environment ignored); without one, the EPICS_PVA_* environment.
p4p does not tell a client which server answered, so `Sample.server` is None.
After a server restart pvxs finds the PV again by itself (its search backs off
to one try every 30 s at most); the first value marks it connected again.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from ..clock import Clock, SystemClock
from ..config.schema import SourceConfig
from ..model import Sample, Severity
from .base import Sink, SourceUnavailable, Subscriptions

try:
    from p4p.client.asyncio import Context, Disconnected, Finished, RemoteError
    from p4p.client.raw import Cancelled
    from p4p.wrapper import Value
except ImportError as error:  # pragma: no cover - depends on the installation
    _IMPORT_ERROR: ImportError | None = error
else:
    _IMPORT_ERROR = None

log = logging.getLogger("beamwatch.sources.pva")

INSTALL = "pip install 'p4p>=4.1,<5'"
MAX_BATCH = 5000  # as in the CA source: a burst this big goes to the sink at once
RESUBSCRIBE_AFTER = 60.0  # seconds before a monitor the server ended is opened again
_SEVERITIES = (Severity.OK, Severity.MINOR, Severity.MAJOR, Severity.INVALID)


def client_conf(addr_list: list[str] | None) -> tuple[dict[str, str] | None, bool]:
    """(conf, useenv) for p4p's Context: with an addr_list exactly that list.

    p4p appends a conf's EPICS_PVA_ADDR_LIST to the environment's when
    useenv=True, so a per-source list must not read the environment.
    """
    if addr_list is None:
        return None, True
    wanted = [str(a).strip() for a in addr_list if str(a).strip()]
    if not wanted:
        raise SourceUnavailable(
            "addr_list is empty: list at least one PVA server or gateway address (host or "
            "host:port, the UDP search port), or leave addr_list out to use "
            "EPICS_PVA_ADDR_LIST"
        )
    return {"EPICS_PVA_ADDR_LIST": " ".join(wanted), "EPICS_PVA_AUTO_ADDR_LIST": "NO"}, False


# --- values ---------------------------------------------------------------------------


def _has(value: Any, field: str) -> bool:
    try:
        return field in value
    except Exception:
        return False


def plain_value(value: Any) -> Any:
    """The check value of a p4p structure: a number, a str (enum label, string), a
    tuple (array). Raises ValueError for structures that are none of these."""
    if not _has(value, "value"):
        raise ValueError(f"no 'value' field ({value.getID()})")
    v = value["value"]
    if isinstance(v, Value):  # a structure: only NTEnum's is a check value
        if not (_has(v, "index") and _has(v, "choices")):
            raise ValueError(f"value is a structure ({value.getID()}), not a scalar, an enum "
                             "or an array")
        index, choices = v["index"], v["choices"]  # NTEnum: the label, as CA enums
        if not 0 <= index < len(choices):
            raise ValueError(f"enum index {index} has no label ({len(choices)} choices)")
        return choices[index]
    if hasattr(v, "tolist"):  # a numpy array (numbers; strings come as lists)
        v = v.tolist()
    if isinstance(v, list):
        return tuple(v)
    if isinstance(v, (int, float, str, bool)):
        return v
    raise ValueError(f"value of type {type(v).__name__} ({value.getID()}) is not a scalar, "
                     "an enum or an array")


def _severity(value: Any) -> tuple[Severity, int]:
    if not _has(value, "alarm"):
        return Severity.OK, 0
    raw = value["alarm.severity"]
    severity = _SEVERITIES[raw] if 0 <= raw <= 3 else Severity.INVALID
    return severity, int(value["alarm.status"])


def _timestamp(value: Any, default: float) -> float:
    if not _has(value, "timeStamp"):
        return default
    return value["timeStamp.secondsPastEpoch"] + value["timeStamp.nanoseconds"] * 1e-9


class _Pv:
    """What the source knows about one subscribed PV."""

    __slots__ = ("address", "subscription", "connected", "ever_connected", "timer")

    def __init__(self, address: str):
        self.address = address
        self.subscription: Any = None
        self.connected = False
        self.ever_connected = False
        self.timer: asyncio.TimerHandle | None = None  # never-connected or resubscribe


class PvaSource(Subscriptions):
    """EPICS PVAccess PVs as Samples (see the module doc)."""

    _pv_class = _Pv

    @classmethod
    def from_config(cls, name: str, config, clock: Clock | None = None) -> PvaSource:
        """The source `name` of a whole config (its `sources.NAME` settings, if any)."""
        return cls(name, config.sources.get(name), clock)

    def __init__(self, name: str = "pva", config: SourceConfig | None = None,
                 clock: Clock | None = None):
        if _IMPORT_ERROR is not None:
            raise SourceUnavailable(
                f"source '{name}': PVAccess needs p4p ({_IMPORT_ERROR}); install it with: "
                f"{INSTALL}"
            )
        self.name = name
        self.config = config or SourceConfig(kind="pva")
        self.clock = clock or SystemClock()
        self.connect_timeout = float(self.config.connect_timeout)
        try:
            self.conf, self.useenv = client_conf(self.config.addr_list)
        except SourceUnavailable as error:
            raise SourceUnavailable(f"source '{name}': {error}") from None
        self._context: Any = None
        self._pvs: dict[str, _Pv] = {}
        self._batch: list[Sample] = []
        self._received = 0.0
        self._sink: Sink | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._flush_handle: asyncio.Handle | None = None
        self._closing: list[Any] = []
        self.connected_count = 0
        self.updates = 0  # values received
        self.events = 0  # disconnects, errors, bad values
        self.batches = 0  # sink calls

    # --- the Source interface ---------------------------------------------------------

    async def start(self, sink: Sink) -> None:
        if await self._take_over(sink):  # connected while standing by (warm)
            return
        if self._sink is not None:
            raise RuntimeError(f"source '{self.name}' is already started")
        self._loop = asyncio.get_running_loop()
        self._sink = sink
        # nt=False: the whole structure, so enums keep their labels and alarms their
        # severity whatever p4p's unwrapping does
        self._context = Context("pva", conf=self.conf, useenv=self.useenv, nt=False)
        for pv in self._pvs.values():
            self._open(pv)

    async def stop(self) -> None:
        """Close every monitor and the client; nothing reaches the sink after this."""
        self._close_all()
        closing, self._closing = self._closing, []
        for sub in closing:
            try:
                await sub.wait_closed()
            except Exception:  # its task ended badly: it is closed all the same
                log.debug("a PVA monitor ended with an error", exc_info=True)
        if self._context is not None:
            self._context.close()
            self._context = None

    # --- status -----------------------------------------------------------------------

    @property
    def addresses(self) -> list[str]:
        return list(self._pvs)

    def stats(self) -> dict[str, int]:
        total = len(self._pvs)
        return {"subscribed": total, "connected": self.connected_count,
                "disconnected": total - self.connected_count, "updates": self.updates,
                "events": self.events, "batches": self.batches}

    def server_of(self, address: str) -> str | None:
        return None  # p4p's client does not say which server answered

    # --- monitors -----------------------------------------------------------------------

    def _open(self, pv: _Pv) -> None:
        self._cancel_timer(pv)
        try:
            pv.subscription = self._context.monitor(pv.address, self._callback(pv),
                                                    notify_disconnect=True)
        except Exception as error:  # e.g. a name pvxs refuses
            pv.subscription = None
            log.warning("cannot monitor PV", extra={"pv": pv.address, "reason": str(error)})
            self._emit(pv, f"cannot monitor: {error}")
            return
        assert self._loop is not None
        pv.timer = self._loop.call_later(self.connect_timeout, self._check_connected, pv)

    def _close(self, pv: _Pv) -> None:
        self._cancel_timer(pv)
        sub, pv.subscription = pv.subscription, None
        self._set_disconnected(pv)
        if sub is not None:
            try:
                sub.close()
                self._closing.append(sub)
            except Exception:  # the subscription is gone anyway
                log.debug("closing a PVA monitor failed", exc_info=True)

    @staticmethod
    def _cancel_timer(pv: _Pv) -> None:
        if pv.timer is not None:
            pv.timer.cancel()
            pv.timer = None

    def _check_connected(self, pv: _Pv) -> None:
        pv.timer = None
        if not pv.ever_connected and pv.subscription is not None:
            self._emit(pv, f"never connected: no PVA server answered within "
                           f"{self.connect_timeout:g}s")

    def _resubscribe(self, pv: _Pv) -> None:
        pv.timer = None
        if self._pvs.get(pv.address) is pv and self._sink is not None:
            self._open(pv)

    def _set_disconnected(self, pv: _Pv) -> None:
        if pv.connected:
            pv.connected = False
            self.connected_count -= 1

    # --- updates ------------------------------------------------------------------------

    def _callback(self, pv: _Pv):
        """p4p's monitor callback: a Value or an exception, on the loop's thread."""

        async def on_update(value: Any) -> None:
            if pv.subscription is None or self._sink is None:  # closed meanwhile
                return
            try:
                if isinstance(value, Exception):
                    self._on_event(pv, value)
                else:
                    self._on_value(pv, value)
            except Exception as error:  # never into p4p: it would end the monitor
                self._on_bad_value(pv, value, error)

        return on_update

    def _on_value(self, pv: _Pv, value: Any) -> None:
        if not pv.connected:  # the first value of a (re)connection
            pv.connected = pv.ever_connected = True
            self.connected_count += 1
        received = self._received if self._batch else self.clock.now()
        severity, status = _severity(value)
        sample = Sample(pv.address, plain_value(value), _timestamp(value, received), received,
                        True, severity, status, None, None)
        self.updates += 1
        self._append(sample)

    def _on_event(self, pv: _Pv, event: Exception) -> None:
        if isinstance(event, Cancelled):  # we closed it
            return
        if isinstance(event, Disconnected):
            # p4p starts every monitor with a Disconnected: only a lost connection counts;
            # a PV never seen is reported once connect_timeout has passed
            if pv.connected:
                self._set_disconnected(pv)
                self._emit(pv, "disconnected")
            return
        self._set_disconnected(pv)
        if isinstance(event, Finished):  # the server ended the monitor
            pv.subscription = None
            assert self._loop is not None
            self._cancel_timer(pv)
            pv.timer = self._loop.call_later(RESUBSCRIBE_AFTER, self._resubscribe, pv)
            self._emit(pv, f"the server ended the monitor; retrying in {RESUBSCRIBE_AFTER:g}s")
        elif isinstance(event, RemoteError):
            self._emit(pv, f"server error: {event}")
        else:
            self._emit(pv, f"{type(event).__name__}: {event}")

    def _on_bad_value(self, pv: _Pv, value: Any, error: Exception) -> None:
        """A value we cannot convert: a sample that says so, never an exception. It is
        sent as not connected: a check then shows the reason (after disconnect_grace),
        where a connected sample without a value would only say "no value"."""
        log.warning("bad value", extra={"pv": pv.address, "reason": repr(error)})
        self._emit(pv, f"bad value: {error}")

    def _emit(self, pv: _Pv, error: str) -> None:
        """A sample without a value: disconnected, never connected, server error."""
        self.events += 1
        now = self.clock.now()
        self._append(Sample(pv.address, None, now, now, False, Severity.INVALID, 0, None,
                            error))

    # --- batching: one sink call per loop iteration ------------------------------------

    def _append(self, sample: Sample) -> None:
        batch = self._batch
        if not batch:
            self._received = sample.received
            if self._flush_handle is None and self._loop is not None:
                self._flush_handle = self._loop.call_soon(self._scheduled_flush)
        batch.append(sample)
        if len(batch) >= MAX_BATCH:
            self._flush()

