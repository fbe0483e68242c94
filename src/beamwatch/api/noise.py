"""Silences and beamline-mode overrides: the service functions every front end
calls (CLI now; the web dashboard and the Slack bot later).

They validate against the config and write to the store through
`store.noise.NoiseStore`; the running engine polls the store each tick and
applies what it finds (see that module), so nothing here needs the engine to
be running. Errors are `ServiceError`s whose text is meant for the user, as is.

Times: `now` is epoch seconds (default: the clock). Durations and end times
may be given as numbers (seconds; epoch seconds) or as text the way people
type them — "2h", "1h30m"; "14:00" (the next 14:00 in the beamline's
timezone), "2026-11-27T14:00" (naive = beamline time) — so every front end
reads them the same way.
"""

from __future__ import annotations

import difflib
import re
import time
import zoneinfo
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from ..config.schema import Config
from ..config.types import parse_duration
from ..engine.modes import ModeChange, ModeSource, Override
from ..engine.silences import Matcher, Silence, SilenceError
from ..store import Store
from ..store.noise import NoiseStore
from ..timefmt import parse_until  # the one grammar of typed times (docs/operations.md)
from . import audit
from .service import engine_alive

BUILTIN_LABELS = ("check", "group", "severity", "mode")
SEVERITY_VALUES = ("minor", "major", "invalid")  # what an alarm's severity label can be
_LIST_AT_MOST = 12


class ServiceError(Exception):
    """A request that cannot be done; `str(e)` is the message for the user."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


# --- times ---------------------------------------------------------------------------------


def iso(t: float, tz: str) -> str:
    """'2026-11-27T14:00:00+00:00' in the beamline's timezone (for JSON)."""
    return datetime.fromtimestamp(t, zoneinfo.ZoneInfo(tz)).isoformat(timespec="seconds")


def end_time(tz: str, now: float, duration: float | str | None,
             until: float | str | None, what: str) -> float:
    """The end of a silence or override from exactly one of `duration`/`until`."""
    if duration is not None and until is not None:
        raise ServiceError(f"{what}: give a duration (for 2h) or an end time (until 14:00), "
                           "not both")
    if duration is None and until is None:
        raise ServiceError(f"{what}: say how long (for 2h) or until when (until 14:00); "
                           "nothing here lasts for ever")
    if duration is not None:
        try:
            seconds = parse_duration(duration)
        except ValueError as e:
            raise ServiceError(f"{what}: {e}") from None
        if not seconds > 0:
            raise ServiceError(f"{what}: the duration must be more than 0")
        return now + seconds
    if isinstance(until, str):
        try:
            end = parse_until(until, tz, now)
        except ValueError as e:
            raise ServiceError(f"{what}: {e}") from None
    else:
        end = float(until)
    if not end > now:
        raise ServiceError(f"{what}: until {_show(end, tz)} is in the past "
                           f"(it is now {_show(now, tz)} {tz})")
    return end


def _show(t: float, tz: str) -> str:
    return datetime.fromtimestamp(t, zoneinfo.ZoneInfo(tz)).strftime("%Y-%m-%d %H:%M")


def _noise(store: Store | NoiseStore) -> NoiseStore:
    return store if isinstance(store, NoiseStore) else NoiseStore(store)


def _store(store: Store | NoiseStore) -> Store:
    return store.store if isinstance(store, NoiseStore) else store


def _required(text: str | None, message: str) -> str:
    if text is None or not text.strip():
        raise ServiceError(message)
    return text.strip()


def _listing(items: Sequence[str]) -> str:
    shown = ", ".join(items[:_LIST_AT_MOST])
    more = len(items) - _LIST_AT_MOST
    return shown + (f" … and {more} more" if more > 0 else "") if items else "none"


# --- matchers against the config -------------------------------------------------------------


def _label_values(config: Config) -> dict[str, set[str]]:
    """Every label name a matcher can use, with the values the config gives it."""
    values: dict[str, set[str]] = {
        "check": set(config.check_ids), "group": {c.group for c in config.checks},
        "severity": set(SEVERITY_VALUES), "mode": set(config.modes.names),
    }
    for c in config.checks:
        for k, v in c.labels.items():
            if k not in BUILTIN_LABELS:
                values.setdefault(k, set()).add(v)
    return values


def _did_you_mean(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, sorted(choices), n=3, cutoff=0.6)
    return f" (did you mean {' or '.join(close)}?)" if close else ""


def parse_matchers(config: Config, items: Sequence[str]) -> tuple[Matcher, ...]:
    """Matchers from what the user typed: `check=fe-vacuum`, `group=~vac|cryo`,
    `severity!=minor`, or bare check ids: one is short for `check=ID`, several
    for `check=~ID1|ID2` (any of them — all matchers must match, so two
    `check=` matchers would match nothing). Label names must exist in the
    config, and an `=`/`!=` value must be one it uses."""
    if not items:
        raise ServiceError("say what to silence: a check id, or matchers like check=fe-vacuum "
                           "or group=~vac.*")
    known = _label_values(config)
    out: list[Matcher] = []
    bare: list[str] = []
    for raw in items:
        text = raw.strip()
        if "=" not in text and "~" not in text:
            if text in known["check"]:
                if text not in bare:
                    bare.append(text)
                continue
            raise ServiceError(
                f"'{text}' is not a configured check{_did_you_mean(text, known['check'])} "
                "nor a matcher like check=fe-vacuum or group=~vac.*")
        try:
            m = Matcher.parse(text)
        except SilenceError as e:
            raise ServiceError(str(e)) from None
        if m.name not in known:
            raise ServiceError(
                f"matcher {m}: no check has a label '{m.name}'{_did_you_mean(m.name, known)}; "
                f"labels: {', '.join(sorted(known))}")
        if m.op in ("=", "!=") and m.value not in known[m.name]:
            raise ServiceError(
                f"matcher {m}: no check has {m.name} '{m.value}'"
                f"{_did_you_mean(m.value, known[m.name])}; "
                f"{m.name} values: {_listing(sorted(known[m.name]))}")
        out.append(m)
    if len(bare) == 1:
        out.insert(0, Matcher("check", bare[0]))
    elif bare:
        out.insert(0, Matcher("check", "|".join(re.sub(r"([.^$*+?{}\[\]\\|()])", r"\\\1", b)
                                                for b in bare), "=~"))
    return tuple(out)


def covered_checks(config: Config, matchers: Sequence[Matcher]) -> list[str]:
    """The configured checks the matchers can mute: those whose labels match for
    at least one alarm severity and one mode (config order)."""
    names = {m.name for m in matchers}
    sevs = SEVERITY_VALUES if "severity" in names else SEVERITY_VALUES[:1]
    modes = tuple(config.modes.names) if "mode" in names else tuple(config.modes.names[:1])
    out = []
    for c in config.checks:
        labels = dict(c.labels)
        labels.update(check=c.id, group=c.group)
        for sev in sevs:
            labels["severity"] = sev
            if any(all(m.matches({**labels, "mode": mode}) for m in matchers) for mode in modes):
                out.append(c.id)
                break
    return out


# --- silences --------------------------------------------------------------------------------


@dataclass(frozen=True)
class SilenceView:
    """A silence as front ends show it. `state`: pending (starts later), active,
    expired (ended early by someone), ended. `covers`: the configured checks it
    can mute, by today's config."""

    silence: Silence
    state: str
    covers: tuple[str, ...]

    def to_json(self, tz: str = "UTC") -> dict:
        s = self.silence
        return {
            "id": s.id, "matchers": [str(m) for m in s.matchers], "author": s.author,
            "reason": s.reason, "start": s.start, "end": s.end,
            "start_text": iso(s.start, tz), "end_text": iso(s.end, tz), "state": self.state,
            "expired_by": s.expired_by, "covers": list(self.covers),
        }


def silence_state(s: Silence, now: float) -> str:
    if now < s.start:
        return "pending"
    if now < s.end:
        return "active"
    return "expired" if s.expired_by else "ended"


def view(config: Config, s: Silence, now: float) -> SilenceView:
    return SilenceView(s, silence_state(s, now), tuple(covered_checks(config, s.matchers)))


def silence(config: Config, store: Store | NoiseStore, matchers: Sequence[str], *,
            duration: float | str | None = None, until: float | str | None = None,
            author: str | None, reason: str | None, now: float | None = None,
            remind_before: float | None = None, via: str = "cli") -> Silence:
    """Silence what `matchers` match (see `parse_matchers`) from now until the end
    given by `duration` or `until`. Author and reason are required; the matchers
    must cover at least one configured check and must not match everything."""
    now = time.time() if now is None else now
    who = _required(author, "a silence needs an author: who is responsible for it")
    why = _required(reason, "a silence needs a reason: say why, e.g. 'replacing the FE gauge'")
    ms = parse_matchers(config, matchers)
    if all(m.matches({}) for m in ms):
        raise ServiceError(f"{', '.join(map(str, ms))} would silence every alarm; give at "
                           "least one matcher that needs a value, like check=fe-vacuum")
    if not covered_checks(config, ms):
        raise ServiceError(f"{', '.join(map(str, ms))} matches none of the "
                           f"{len(config.checks)} configured checks: "
                           f"{_listing(config.check_ids)}")
    end = end_time(config.timezone, now, duration, until, "silence")
    try:
        made = _noise(store).add_silence(ms, start=now, end=end, author=who, reason=why,
                                         now=now, remind_before=remind_before)
    except SilenceError as e:
        raise ServiceError(str(e)) from None
    audit.record(_store(store), who, via, "silence", ", ".join(map(str, ms)),
                 f"#{made.id} until {_show(end, config.timezone)}: {why}", now=now)
    return made


def silences(config: Config, store: Store | NoiseStore, now: float | None = None,
             include_expired: bool = False) -> list[SilenceView]:
    """The silences in force or starting later (with include_expired: all of them,
    also those that ended), oldest first."""
    now = time.time() if now is None else now
    found = _noise(store).silences(since=None if include_expired else now)
    return [view(config, s, now) for s in found]


def unsilence(store: Store | NoiseStore, silence_id: str | int, by: str | None,
              now: float | None = None, *, tz: str = "UTC", via: str = "cli") -> Silence:
    """End a silence now. Returns it as ended (end = now, expired_by = `by`)."""
    now = time.time() if now is None else now
    who = _required(by, "say who ends the silence")
    text = str(silence_id).strip().lstrip("#")
    if not text.isdigit():
        raise ServiceError(f"'{silence_id}' is not a silence id: a number, as "
                           "`beamwatch silences` shows")
    noise = _noise(store)
    s = noise.silence(text) if int(text) < 2**62 else None  # beyond any row id
    if s is None:
        raise ServiceError(f"no silence {text} (`beamwatch silences --all` lists them)")
    if s.end <= now:
        how = f"ended early by {s.expired_by}" if s.expired_by else "ran out"
        raise ServiceError(f"silence {text} already {how} at {_show(s.end, tz)} {tz}")
    ended = noise.expire_silence(text, who, now)
    audit.record(_store(store), who, via, "unsilence", f"#{text}",
                 ", ".join(map(str, s.matchers)), now=now)
    return ended


# --- the beamline mode ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ModeInfo:
    """The beamline mode as the store knows it.

    `source`: override, or what the engine last logged (pv, schedule, default,
    expiry — an override ran out, override — one was cleared); "default" with
    `since` None when nothing was ever logged. `note`: the last logged change,
    as a sentence. Without a running engine this is the last mode it logged.
    """

    mode: str
    source: str
    since: float | None
    override: Override | None
    engine_running: bool
    modes: tuple[str, ...]
    default: str
    note: str = ""

    def to_json(self, tz: str = "UTC") -> dict:
        ov = self.override
        return {
            "mode": self.mode, "source": self.source, "since": self.since,
            "since_text": iso(self.since, tz) if self.since is not None else None,
            "override": None if ov is None else {
                "mode": ov.mode, "author": ov.author, "reason": ov.reason, "start": ov.start,
                "until": ov.until, "until_text": iso(ov.until, tz)},
            "engine_running": self.engine_running, "modes": list(self.modes),
            "default": self.default, "note": self.note,
        }


def mode_status(config: Config, store: Store | NoiseStore,
                now: float | None = None) -> ModeInfo:
    """Which mode is in force, from where, and the override (who, why, until) if any."""
    now = time.time() if now is None else now
    noise = _noise(store)
    alive = engine_alive(_store(store), now)
    names, default = tuple(config.modes.names), config.modes.default
    ov = noise.active_override(now)
    if ov is not None:
        return ModeInfo(ov.mode, str(ModeSource.OVERRIDE), ov.start, ov, alive, names, default,
                        f"override by {ov.author}: {ov.reason}")
    last_ov = noise.overrides(limit=1)
    change = noise.last_mode_change(settled_after=last_ov[0].end if last_ov else None)
    if change is None:
        return ModeInfo(default, str(ModeSource.DEFAULT), None, None, alive, names, default,
                        "no mode change logged yet: the configured default")
    return ModeInfo(change.new, str(change.source), change.time, None, alive, names, default,
                    str(change))


def set_mode(config: Config, store: Store | NoiseStore, name: str, *,
             for_: float | str | None = None, until: float | str | None = None,
             author: str | None, reason: str | None, now: float | None = None,
             via: str = "cli") -> Override:
    """Force the beamline mode `name` (a configured mode) until an end time —
    required, so that a forgotten override cannot hold the beamline in
    'shutdown' for good. Replaces any override in force."""
    now = time.time() if now is None else now
    modes = config.modes.names
    if name not in modes:
        raise ServiceError(f"unknown mode '{name}'{_did_you_mean(name, modes)}; "
                           f"modes: {', '.join(modes)}")
    who = _required(author, "a mode override needs an author: who is responsible for it")
    why = _required(reason, "a mode override needs a reason: say why, e.g. "
                            "'vacuum intervention'")
    end = end_time(config.timezone, now, for_, until, "mode override")
    made = _noise(store).set_override(name, author=who, reason=why, until=end, now=now)
    audit.record(_store(store), who, via, "mode set", name,
                 f"until {_show(end, config.timezone)}: {why}", now=now)
    return made


def clear_mode(store: Store | NoiseStore, author: str | None,
               now: float | None = None, via: str = "cli") -> Override | None:
    """End the override in force; returns it, or None if there was none (not an
    error: clearing twice leaves the same state)."""
    now = time.time() if now is None else now
    who = _required(author, "say who clears the mode override")
    cleared = _noise(store).clear_override(who, now)
    if cleared is not None:
        audit.record(_store(store), who, via, "mode clear", cleared.mode, "", now=now)
    return cleared


def mode_changes(store: Store | NoiseStore, since: float | None = None,
                 limit: int | None = None) -> list[ModeChange]:
    """The mode change log (written by the engine), oldest first."""
    return _noise(store).mode_changes(since=since, limit=limit)
