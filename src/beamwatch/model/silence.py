"""A silence: matchers on an alarm's labels, a start and an end, an author and a reason."""

from __future__ import annotations

import re
import zoneinfo
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol


class Labelled(Protocol):
    """What a silence matches: anything with labels (an engine Alert)."""

    def label_set(self) -> Mapping[str, str]: ...


_OPS = ("=~", "!~", "!=", "=")  # longest first, so "=~" is not read as "="
_MATCHER = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_.-]*)\s*(=~|!~|!=|=)\s*(.*?)\s*$")


class SilenceError(ValueError):
    """A silence or window that must not exist (no author, end before start...)."""


# --- matchers ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Matcher:
    """`name op value` on an alert's labels; op is =, !=, =~ or !~.

    Regexes are anchored (the whole value must match), as in Alertmanager, so
    `check=~fe-.*` does not also match `safe-fe-x`. A missing label reads as "".
    Names: `check`, `group`, `severity`, `mode`, or any label of the check.
    """

    name: str
    value: str
    op: str = "="
    _regex: re.Pattern[str] | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.op not in _OPS:
            raise SilenceError(
                f"matcher operator must be one of {', '.join(_OPS)}, not '{self.op}'")
        if self.op in ("=~", "!~"):
            try:
                object.__setattr__(self, "_regex", re.compile(self.value))
            except re.error as e:
                raise SilenceError(
                    f"matcher {self.name}{self.op}{self.value}: bad regex: {e}") from None

    @classmethod
    def parse(cls, text: str) -> Matcher:
        """'check=fe-vacuum', 'group=~vac|cryo', 'severity!=minor'."""
        m = _MATCHER.match(text)
        if not m:
            raise SilenceError(f"'{text}' is not a matcher like check=fe-vacuum or group=~vac.*")
        name, op, value = m.groups()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        return cls(name, value, op)

    def matches(self, labels: Mapping[str, str]) -> bool:
        actual = labels.get(self.name, "")
        if self._regex is not None:
            hit = self._regex.fullmatch(actual) is not None
        else:
            hit = actual == self.value
        return hit if self.op in ("=", "=~") else not hit

    def __str__(self) -> str:
        return f"{self.name}{self.op}{self.value}"


def matchers(items: Iterable[str | Matcher] | Mapping[str, str]) -> tuple[Matcher, ...]:
    """Matchers from strings ('group=vacuum'), Matchers, or a {name: value} mapping."""
    if isinstance(items, Mapping):
        return tuple(Matcher(k, v) for k, v in items.items())
    return tuple(m if isinstance(m, Matcher) else Matcher.parse(m) for m in items)


def _match_all(ms: Sequence[Matcher], labels: Mapping[str, str]) -> bool:
    return all(m.matches(labels) for m in ms)


def _guard_matchers(ms: Sequence[Matcher], what: str) -> None:
    """At least one matcher must need something of the alert, so that a typo like
    `group=~.*` cannot silence the whole beamline (Alertmanager's rule too)."""
    if not ms:
        raise SilenceError(f"{what} needs at least one matcher (e.g. check=fe-vacuum)")
    if all(m.matches({}) for m in ms):
        raise SilenceError(
            f"{what} would match every alert ({', '.join(map(str, ms))}); "
            "give at least one matcher that needs a value"
        )


# --- times as people read them -----------------------------------------------------------


def until_text(end: float, now: float, tz: str = "UTC") -> str:
    """'14:00 UTC' today, 'Tue 03 Mar 14:00 UTC' on another day."""
    zone = zoneinfo.ZoneInfo(tz)
    e, n = datetime.fromtimestamp(end, zone), datetime.fromtimestamp(now, zone)
    fmt = "%H:%M %Z" if e.date() == n.date() else "%a %d %b %H:%M %Z"
    return e.strftime(fmt)


# --- silences ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Silence:
    """Mutes the alerts all its matchers match, for start <= now < end.

    `remind_before`: seconds before `end` to remind the author (None: the
    muter's default; 0: never). `expired_by` is set when someone ended it early.
    """

    id: str
    matchers: tuple[Matcher, ...]
    start: float
    end: float
    author: str
    reason: str
    remind_before: float | None = None
    expired_by: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "matchers", matchers(self.matchers))
        if not self.author or not self.author.strip():
            raise SilenceError("a silence needs an author: who is responsible for it")
        if not self.reason or not self.reason.strip():
            raise SilenceError("a silence needs a reason, e.g. 'replacing gauge'")
        if self.expired_by is None and not self.end > self.start:
            raise SilenceError("a silence must end after it starts")
        _guard_matchers(self.matchers, f"silence {self.id}")

    def active(self, now: float) -> bool:
        return self.start <= now < self.end

    def matches(self, alert: Labelled) -> bool:
        return _match_all(self.matchers, alert.label_set())

    def describe(self, now: float, tz: str = "UTC") -> str:
        """'silenced by ana until 14:00 UTC: replacing gauge'."""
        return f"silenced by {self.author} until {until_text(self.end, now, tz)}: {self.reason}"


@dataclass(frozen=True, slots=True)
class SilenceReminder:
    """Tell `author` that silence `silence_id` ends at `end`. `key` is unique per
    (silence, end), so an engine can send each reminder once even across
    restarts; extending a silence gives a new key and a new reminder."""

    silence_id: str
    author: str
    end: float
    at: float  # when the reminder became due
    text: str

    @property
    def key(self) -> str:
        return f"silence-reminder:{self.silence_id}:{self.end:.0f}"
