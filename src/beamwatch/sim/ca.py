"""The little Channel Access the sim needs: read values with their alarm, put, wait.

Built on aioca. libca reads EPICS_CA_ADDR_LIST once per process, when the
first CA context is created, so a process that talks to a sim must have the
sim's `client_env` in os.environ before its first CA call. That is why the sim
does its CA from its own processes (the supervisor, the `sim` CLI) and never
from the process that embeds `SimBeamline`, which may be a test session
whose CA context belongs to something else.
"""

from __future__ import annotations

import importlib
import logging
import sys
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any

from .errors import SimError

log = logging.getLogger("beamwatch.sim")
_SEVERITY_NAMES = ("NO_ALARM", "MINOR", "MAJOR", "INVALID")


def _aioca() -> Any:
    try:
        return importlib.import_module("aioca")
    except ImportError:
        raise SimError("aioca is not installed; the sim needs it: pip install aioca") from None


@dataclass(frozen=True)
class Reading:
    """One PV as a CA client sees it now. Enums are given as their state string."""

    pv: str
    connected: bool
    value: Any = None
    severity: int = 3  # EPICS order: 0 NO_ALARM, 1 MINOR, 2 MAJOR, 3 INVALID
    status: int = 0
    units: str | None = None
    error: str | None = None

    @property
    def in_alarm(self) -> bool:
        return not self.connected or self.severity > 0

    @property
    def severity_name(self) -> str:
        return _SEVERITY_NAMES[self.severity] if 0 <= self.severity < 4 else str(self.severity)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Reading:
        return cls(**data)


def _plain(value: Any) -> Any:
    """aioca's augmented value -> str/int/float (enums by name)."""
    enums = getattr(value, "enums", None)
    if enums is not None:
        index = int(value)
        return enums[index] if 0 <= index < len(enums) else index
    if isinstance(value, str):
        return str(value)
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if hasattr(value, "tolist"):
        return value.tolist()
    return value


async def read(pvs: Iterable[str], timeout: float = 2.0) -> dict[str, Reading]:
    """Every PV at once; a PV that does not answer within `timeout` is disconnected."""
    aioca = _aioca()
    names = list(dict.fromkeys(pvs))
    if not names:
        return {}
    values = await aioca.caget(names, format=aioca.FORMAT_CTRL, timeout=timeout, throw=False)
    out = {}
    for name, v in zip(names, values, strict=True):
        if not v.ok:
            out[name] = Reading(name, False, error=str(v))
            continue
        units = getattr(v, "units", None)
        out[name] = Reading(name, True, _plain(v), int(v.severity), int(v.status),
                            units.decode() if isinstance(units, bytes) else units)
    return out


async def put(pv: str, value: Any, timeout: float = 3.0) -> None:
    """Write and wait for the record to have processed it."""
    aioca = _aioca()
    try:
        await aioca.caput(pv, value, wait=True, timeout=timeout)
    except aioca.CANothing as e:
        raise SimError(f"cannot write {value!r} to {pv}: {e}") from None


async def answers(pv: str, timeout: float) -> bool:
    return (await read([pv], timeout))[pv].connected


def monitor(pv: str, callback: Callable[[str], None]) -> Any:
    """Call `callback(text)` with each new value of `pv` as a string (enums by name).
    Returns the subscription; `.close()` ends it."""
    aioca = _aioca()

    def deliver(value: Any) -> None:
        if getattr(value, "ok", True):
            callback(str(value))

    return aioca.camonitor(pv, deliver, datatype=str)


def close() -> None:
    """Drop every channel before the event loop goes: aioca calls back into the loop
    that created a channel, and a closed loop turns that into noise at exit."""
    aioca = importlib.import_module("aioca") if "aioca" in sys.modules else None
    if aioca is not None:
        aioca.purge_channel_caches()


_exception_handler: Any = None


def log_ca_exceptions() -> None:
    """Send libca's asynchronous error reports to the log, one line each.

    libca prints a six-line banner on stderr for every lost circuit; in the sim
    an IOC going away is usually the point (ioc-down), so it becomes an INFO
    line. Call it after the first CA call, in that call's thread: that thread
    holds the CA context the handler is installed in."""
    global _exception_handler
    if _exception_handler is not None:
        return
    from epicscorelibs.ca import cadef

    @cadef.exception_handler
    def handler(args: Any) -> None:
        try:
            context = args.ctx.decode(errors="replace") if args.ctx else ""
            log.info("CA: %s (%s)", cadef.ca_message(args.stat), context)
        except Exception:  # noqa: BLE001 - never raise into libca's thread
            pass

    cadef.ca_add_exception_event(handler, None)
    _exception_handler = handler
