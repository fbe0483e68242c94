"""Small value types of the config language: durations, secrets."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer

# one duration grammar for the config and the command line (docs/operations.md)
from ..timefmt import format_duration, parse_duration

__all__ = ["Duration", "Secret", "SecretValue", "format_duration", "parse_duration"]

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
