"""Small value types of the config language: durations, secrets."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")


def parse_duration(raw: Any) -> float:
    """'30s', '15m', '1h30m', '7d', '1w' or a number of seconds -> seconds."""
    if isinstance(raw, bool):
        raise ValueError("a duration like '30s', '15m', '2h' or '7d' is needed, not a boolean")
    if isinstance(raw, (int, float)):
        if raw < 0:
            raise ValueError("a duration cannot be negative")
        return float(raw)
    text = str(raw).strip().replace(" ", "")
    pos, total = 0, 0.0
    for m in _PART.finditer(text):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if pos != len(text) or not text:
        raise ValueError(
            f"'{raw}' is not a duration; use a number and a unit: ms, s, m, h, d, w "
            "(e.g. '30s', '15m', '1h30m', '7d')"
        )
    return total


def format_duration(seconds: float) -> str:
    seconds = float(seconds)
    if seconds < 1 and seconds > 0:
        return f"{seconds * 1000:.0f}ms"
    out, rest = [], int(round(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if rest >= size:
            out.append(f"{rest // size}{unit}")
            rest %= size
    return "".join(out) or "0s"


Duration = Annotated[
    float, BeforeValidator(parse_duration), PlainSerializer(format_duration, return_type=str)
]


class Secret:
    """A value that must never be printed: str() and repr() give '<secret>'."""

    __slots__ = ("_value",)

    def __init__(self, value: str):
        self._value = value

    def get(self) -> str:
        return self._value

    def __str__(self) -> str:
        return "<secret>"

    __repr__ = __str__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)


def _to_secret(raw: Any) -> Secret:
    if isinstance(raw, Secret):
        return raw
    if not isinstance(raw, str):
        raise ValueError("a secret must be a string (or use the *_file form)")
    return Secret(raw)


SecretValue = Annotated[Secret, BeforeValidator(_to_secret), PlainSerializer(str, return_type=str)]
