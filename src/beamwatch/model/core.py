"""The domain objects that flow through beamwatch, one direction:

Source --Sample--> Check --Evaluation--> AlarmLogic --Transition--> store.

All are frozen dataclasses: a value passed along the pipeline is never changed
in place by a later stage.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


class Severity(enum.IntEnum):
    """Alarm severity in the EPICS order: OK < MINOR < MAJOR < INVALID."""

    OK = 0
    MINOR = 1
    MAJOR = 2
    INVALID = 3

    @classmethod
    def parse(cls, text: str | int | Severity) -> Severity:
        if isinstance(text, Severity):
            return text
        if isinstance(text, int):
            return cls(text)
        name = str(text).strip().upper()
        if name in ("NO_ALARM", "NONE"):
            return cls.OK
        return cls[name]

    def __str__(self) -> str:  # "MAJOR", not "Severity.MAJOR"
        return self.name


class MuteReason(enum.StrEnum):
    """Why a non-OK alarm is not notified. Every muter records one."""

    MODE = "MODE"
    DEPENDENCY = "DEPENDENCY"
    SILENCE = "SILENCE"
    SCHEDULE = "SCHEDULE"
    FLAPPING = "FLAPPING"


@dataclass(frozen=True, slots=True)
class Sample:
    """One update from a source about one address (a PV name, a URL...).

    `value` is whatever the source gives (float, int, str for enums and
    strings, a tuple for arrays, None when there is no value).
    `timestamp` is the server's time for the value (the IOC's, for EPICS);
    `received` is when beamwatch got it, on beamwatch's clock.
    """

    address: str
    value: Any
    timestamp: float
    received: float
    connected: bool = True
    severity: Severity = Severity.OK  # the record's own alarm severity (EPICS)
    status: int = 0  # the record's alarm status code (EPICS)
    server: str | None = None  # "host:port" of the IOC serving it
    error: str | None = None  # why there is no value (e.g. "disconnected")


@dataclass(frozen=True, slots=True)
class Evaluation:
    """What a check concludes from its latest samples at one moment."""

    severity: Severity
    message: str
    value: Any = None
    time: float = 0.0
    forecast: bool = False  # the severity is a forecast (checks/forecast.py), not yet real


@dataclass(frozen=True, slots=True)
class AlarmState:
    """The alarm state of one check, as the Phoebus alarm server keeps it.

    `severity` is the alarm severity people see: with `latch`, the worst seen
    since the last acknowledgement; otherwise equal to `current`.
    `current` is the severity the check has after its `for:` delay.
    """

    check_id: str
    severity: Severity = Severity.OK
    current: Severity = Severity.OK
    acked: bool = False
    acked_by: str | None = None
    acked_at: float | None = None
    since: float = 0.0  # when `severity` took its present value
    message: str = ""
    value: Any = None
    pending: Severity | None = None  # evaluated severity waiting out `for:`
    pending_since: float | None = None

    @property
    def active(self) -> bool:
        return self.severity > Severity.OK


@dataclass(frozen=True, slots=True)
class Transition:
    """A change of a check's alarm state: one row of the beamline log."""

    check_id: str
    time: float
    old: Severity
    new: Severity
    current: Severity
    acked: bool
    value: Any
    message: str
    reason: str  # "evaluation", "ack", "unlatch", "restart"...
    actor: str | None = None  # who acknowledged, for reason "ack"
    muted: MuteReason | None = None
    mute_detail: str | None = None  # e.g. "root cause: fe-vacuum"
    incident_id: str | None = None
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def is_raise(self) -> bool:
        return self.new > self.old

    @property
    def is_clear(self) -> bool:
        return self.new == Severity.OK and self.old > Severity.OK


def value_text(value: Any) -> str:
    """A short, stable text form of a value for messages and the log."""
    if value is None:
        return "none"
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return f"{value:.6g}"
    if isinstance(value, (tuple, list)):
        inner = ", ".join(value_text(v) for v in list(value)[:5])
        more = ", …" if len(value) > 5 else ""
        return f"[{inner}{more}]"
    return str(value)


def json_value(value: Any) -> Any:
    """A JSON-safe form of a value (NaN and inf become strings)."""
    if isinstance(value, float) and not math.isfinite(value):
        return value_text(value)
    if isinstance(value, (tuple, list)):
        return [json_value(v) for v in value]
    if value is None or isinstance(value, (int, float, str, bool)):
        return value
    return str(value)


def slot_constructor(cls: type) -> Callable[..., Any]:
    """A positional constructor for a frozen slots dataclass without its __init__: the
    frozen __init__ sets each field with object.__setattr__ (a call per field), which on
    the hot path (a Sample, an Evaluation and an AlarmState per update) costs more than
    the work it carries. This fills the slots through their descriptors; the result is
    an ordinary instance, still frozen. Every field must be given, in declaration order.
    Falls back to the class itself if it is not a slots dataclass."""
    names = tuple(f.name for f in dataclasses.fields(cls))
    setters = [getattr(cls.__dict__.get(n), "__set__", None) for n in names]
    if None in setters:
        return cls
    # unrolled (generated like dataclasses' own __init__): a loop over the setters
    # would cost what it saves
    args = ", ".join(f"v{i}" for i in range(len(names)))
    body = "".join(f"    s{i}(o, v{i})\n" for i in range(len(names)))
    scope = {"new": object.__new__, "cls": cls, **{f"s{i}": s for i, s in enumerate(setters)}}
    exec(f"def make({args}):\n    o = new(cls)\n{body}    return o\n", scope)  # noqa: S102
    make = scope["make"]
    make.__qualname__ = f"slot_constructor({cls.__name__})"
    return make
