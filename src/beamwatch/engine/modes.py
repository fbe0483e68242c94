"""The beamline mode (user, unattended, maintenance, shutdown...) and the MODE stage.

Where the mode comes from, strongest first:

1. a manual override (author, reason, an end time — required: an override
   forgotten in "shutdown" would silence the beamline for good);
2. the mode PV (`modes.from_pv`), its raw value mapped by `modes.map`;
   a value that maps to no mode, or a disconnected PV, keeps the last good
   mode and is reported once (a ModeProblem), never guessed;
3. a schedule (a mode that holds during recurring windows), for beamlines
   without a mode PV, or before the PV has ever been read;
4. `modes.default`.

Every change is returned as a record (ModeChange / ModeProblem) for the
engine to log: who or what changed the mode, from what, to what, and why.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..model import MuteReason
from ..model.modes import ModeChange, ModeProblem, ModeRecord, ModeSource, Override
from .mute import Alert

if TYPE_CHECKING:
    from ..config.schema import CheckConfig, ModesConfig
    from .silences import Window


@dataclass(frozen=True, slots=True)
class ScheduledMode:
    """`mode` holds while `window` is open (e.g. maintenance every Tuesday 08:00 for 8h)."""

    mode: str
    window: Window


@dataclass(frozen=True, slots=True)
class ModeStatus:
    """Everything the dashboard shows about the mode."""

    mode: str
    source: ModeSource
    override: Override | None
    pv_mode: str | None
    pv_raw: Any


class ModeTracker:
    """Holds the inputs (PV, override, schedule) and says which mode is in force.

    `mode(now)` is a pure query; `on_pv`, `set_override`, `clear_override` and
    `tick` change inputs and return the records of what changed. Call `tick`
    every engine tick so that override expiries and schedule edges are logged
    when they happen.
    """

    def __init__(self, names: Sequence[str], default: str, *,
                 pv_map: Mapping[str, str] | None = None,
                 schedule: Iterable[ScheduledMode] = (), now: float = 0.0):
        self.names = list(names)
        if default not in self.names:
            raise ValueError(f"default mode '{default}' is not in {self.names}")
        self.default = default
        self.pv_map = dict(pv_map or {})
        self.schedule = list(schedule)
        for s in self.schedule:
            self._known(s.mode)
        self._lower = {n.lower(): n for n in self.names}
        self.override: Override | None = None
        self.pv_mode: str | None = None
        self.pv_raw: Any = None
        self._problem_key: Any = None  # the last reported problem, so each is said once
        self._reported = self.mode(now)
        self.pv_name: str | None = None  # which PV `pv_raw` came from
        self._pending: list[ModeRecord] = []  # said at the next tick

    @classmethod
    def from_config(cls, cfg: ModesConfig, schedule: Iterable[ScheduledMode] = (),
                    now: float = 0.0, previous: ModeTracker | None = None) -> ModeTracker:
        """`previous`: the running tracker, on a reload that changed `modes:`."""
        tracker = cls(cfg.names, cfg.default, pv_map=cfg.map, schedule=schedule, now=now)
        tracker.pv_name = cfg.from_pv
        if previous is not None:
            tracker.take_over(previous, now)
        return tracker

    def take_over(self, previous: ModeTracker, now: float) -> None:
        """A reload changed `modes:`: carry on with what the running tracker knew.

        The mode PV's last value is kept and mapped again through the new `map` —
        Channel Access does not send an unchanged value again, so without it the
        beamline would fall back to the default mode until the PV next changes. A
        value the new map names no mode for keeps the last good mode (if it is
        still a mode), reported once. The override is kept if its mode still
        exists. A change of the mode in force is logged at the next `tick`.
        """
        self._reported = previous._reported
        ov = previous.override
        if ov is not None and ov.mode in self.names:
            self.override = ov
        if previous.pv_raw is not None and previous.pv_name == self.pv_name:
            raw = self.pv_raw = previous.pv_raw
            self._problem_key = previous._problem_key
            self.pv_mode = self.resolve(raw)
            if self.pv_mode is None:
                kept = previous.pv_mode if previous.pv_mode in self.names else None
                self.pv_mode = kept
                self._problem_key = ("unknown", str(raw))
                self._pending.append(ModeProblem(
                    now, raw, kept or self.mode(now),
                    f"after the reload, mode PV value '{raw}' names no mode (known: "
                    f"{', '.join(list(self.pv_map) or self.names)}); keeping mode "
                    f"{kept or self.mode(now)}"))

    def _known(self, mode: str) -> str:
        if mode not in self.names:
            raise ValueError(f"unknown mode '{mode}' (modes: {', '.join(self.names)})")
        return mode

    # -- queries ------------------------------------------------------------------------

    def status(self, now: float) -> ModeStatus:
        ov = self.override
        if ov is not None and now < ov.until:
            mode, source = ov.mode, ModeSource.OVERRIDE
        elif self.pv_mode is not None:
            mode, source = self.pv_mode, ModeSource.PV
        elif (scheduled := self._scheduled(now)) is not None:
            mode, source = scheduled, ModeSource.SCHEDULE
        else:
            mode, source = self.default, ModeSource.DEFAULT
        live = ov if ov is not None and now < ov.until else None
        return ModeStatus(mode, source, live, self.pv_mode, self.pv_raw)

    def mode(self, now: float) -> str:
        """The mode in force at `now`."""
        return self.status(now).mode

    def _scheduled(self, now: float) -> str | None:
        for s in self.schedule:
            if s.window.occurrence(now) is not None:
                return s.mode
        return None

    def resolve(self, raw: Any) -> str | None:
        """The mode a raw PV value names: `map` first (keys are text; 2.0 reads as
        "2"), then a mode name, ignoring case. None: it names no mode."""
        keys = [str(raw)]
        if isinstance(raw, float) and raw.is_integer():
            keys.append(str(int(raw)))
        for k in keys:
            if k in self.pv_map:
                return self.pv_map[k]
        for k in keys:
            if k.strip().lower() in self._lower:
                return self._lower[k.strip().lower()]
        return None

    # -- inputs ---------------------------------------------------------------------------

    def on_pv(self, raw: Any, now: float, connected: bool = True) -> list[ModeRecord]:
        """A new value (or a disconnect) of the mode PV."""
        out: list[ModeRecord] = self._expire(now)
        if not connected or raw is None:
            key = ("disconnected",)
            if key != self._problem_key:
                self._problem_key = key
                kept = self.mode(now)
                out.append(ModeProblem(now, None, kept,
                                       f"mode PV disconnected; keeping mode {kept}"))
            return out
        self.pv_raw = raw
        mode = self.resolve(raw)
        if mode is None:
            key = ("unknown", str(raw))
            if key != self._problem_key:
                self._problem_key = key
                kept = self.mode(now)
                known = ", ".join(list(self.pv_map) or self.names)
                out.append(ModeProblem(
                    now, raw, kept,
                    f"mode PV value '{raw}' names no mode (known: {known}); keeping mode {kept}",
                ))
            return out
        self._problem_key = None
        self.pv_mode = mode
        change = self._diff(now)
        return out + ([change] if change else [])

    def set_override(self, mode: str, *, author: str, reason: str, now: float,
                     until: float) -> list[ModeRecord]:
        """Force `mode` until `until`, over the PV and the schedule."""
        self._known(mode)
        if not author.strip() or not reason.strip():
            raise ValueError("a mode override needs an author and a reason")
        if not until > now:
            raise ValueError("a mode override must end in the future")
        out: list[ModeRecord] = self._expire(now)
        old = self._reported
        self.override = Override(mode, author, reason, now, until)
        self._reported = self.mode(now)
        out.append(ModeChange(now, old, self._reported, ModeSource.OVERRIDE, author, reason))
        return out

    def clear_override(self, *, author: str, now: float,
                       reason: str = "override cleared") -> list[ModeRecord]:
        """End the override early; the PV (or schedule, or default) decides again."""
        out: list[ModeRecord] = self._expire(now)
        if self.override is None:
            return out
        old = self._reported
        self.override = None
        self._reported = self.mode(now)
        out.append(ModeChange(now, old, self._reported, ModeSource.OVERRIDE, author, reason))
        return out

    def tick(self, now: float) -> list[ModeRecord]:
        """Time passed: an override may have expired, a scheduled window opened or closed."""
        out, self._pending = self._pending, []
        out += self._expire(now)
        change = self._diff(now)
        if change:
            out.append(change)
        return out

    # -- bookkeeping ------------------------------------------------------------------------

    def _expire(self, now: float) -> list[ModeRecord]:
        ov = self.override
        if ov is None or now < ov.until:
            return []
        self.override = None
        old, self._reported = self._reported, self.mode(now)
        back = self.status(now).source
        return [ModeChange(ov.until, old, self._reported, ModeSource.EXPIRY, ov.author,
                           f"override '{ov.mode}' ({ov.reason}) expired; mode from {back}")]

    def _diff(self, now: float) -> ModeChange | None:
        """A record if the mode in force differs from the last one reported,
        attributed to whatever decides the mode now."""
        new = self.mode(now)
        if new == self._reported:
            return None
        old, self._reported = self._reported, new
        source = self.status(now).source
        reason = {
            ModeSource.PV: f"mode PV reads '{self.pv_raw}'",
            ModeSource.SCHEDULE: "scheduled window open",
            ModeSource.DEFAULT: "no mode PV value and no scheduled window: the default",
        }.get(source, "")
        return ModeChange(now, old, new, source, None, reason)


class ModeMuter:
    """The MODE stage: mutes a check whose `modes:` list leaves out the mode in force.

    A check with no `modes:` runs in every mode. The mode is the alert's own
    (stamped by the engine at decision time) or else the tracker's.
    """

    reason = MuteReason.MODE

    def __init__(self, check_modes: Mapping[str, Sequence[str] | None],
                 tracker: ModeTracker | None = None):
        self.check_modes = {k: (None if v is None else frozenset(v))
                            for k, v in check_modes.items()}
        self.tracker = tracker

    @classmethod
    def from_checks(cls, checks: Iterable[CheckConfig],
                    tracker: ModeTracker | None = None) -> ModeMuter:
        return cls({c.id: c.modes for c in checks}, tracker)

    def mutes(self, alert: Alert, now: float) -> str | None:
        allowed = self.check_modes.get(alert.check_id)
        if allowed is None:
            return None
        mode = alert.mode
        if mode is None:
            if self.tracker is None:
                return None
            mode = self.tracker.mode(now)
        return None if mode in allowed else f"not active in mode {mode}"
