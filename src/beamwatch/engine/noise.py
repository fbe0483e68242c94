"""Everything that decides whether an alarm reaches a person, built from one config:
the beamline mode, silences, maintenance windows, the dependency graph with its
incidents, flapping — and the one mute pipeline over them."""

from __future__ import annotations

import hashlib
import zoneinfo
from dataclasses import dataclass

from ..config.schema import Config
from .deps import DependencyGraph, DependencyMuter
from .flapping import FlapDetector, FlapMuter
from .incidents import IncidentTracker
from .modes import ModeMuter, ModeTracker, ScheduledMode
from .mute import MutePipeline
from .silences import (
    MaintenanceWindow,
    Matcher,
    RecurringWindow,
    ScheduleMuter,
    SilenceMuter,
)


def incident_id(root: str, opened: float) -> str:
    """Deterministic, so a decision replayed after a crash has the same outbox keys;
    at most 64 characters (long ids are shortened with a hash)."""
    text = f"{root}@{opened:.3f}"
    if len(text) <= 64:
        return text
    digest = hashlib.sha1(text.encode()).hexdigest()[:12]
    return f"{root[:40]}~{digest}@{opened:.0f}"[-64:]


def maintenance_windows(config: Config) -> list[MaintenanceWindow]:
    out = []
    for m in config.maintenance:
        window = _window(m.cron, m.rrule, m.start, m.duration, m.timezone or config.timezone)
        out.append(MaintenanceWindow(m.id, window, tuple(Matcher.parse(x) for x in m.match),
                                     m.reason))
    return out


def _window(cron, rrule, start, duration, tz) -> RecurringWindow:
    start_t = None
    if start is not None:
        start_t = (start if start.tzinfo else start.replace(tzinfo=zoneinfo.ZoneInfo(tz))
                   ).timestamp()
    return RecurringWindow(duration, cron=cron, rrule=rrule, start=start_t, tz=tz)


def mode_schedule(config: Config) -> list[ScheduledMode]:
    return [ScheduledMode(e.mode, _window(e.cron, e.rrule, e.start, e.duration, config.timezone))
            for e in config.modes.schedule]


@dataclass
class Noise:
    modes: ModeTracker
    silences: SilenceMuter
    schedule: ScheduleMuter
    graph: DependencyGraph
    incidents: IncidentTracker
    flaps: FlapDetector
    pipeline: MutePipeline  # every stage: for per-check transitions
    page_pipeline: MutePipeline  # without DEPENDENCY: an incident's root is never a consequence

    @classmethod
    def from_config(cls, config: Config, now: float = 0.0,
                    previous: Noise | None = None, same_modes: bool = True) -> Noise:
        """`previous`: on a reload, what is going on carries over — the mode in force,
        silences, open incidents, flapping — under the new config's rules."""
        graph = DependencyGraph.from_checks(config.checks, settle=config.noise.settle)
        schedule = ScheduleMuter(maintenance_windows(config), tz=config.timezone)
        if previous is not None:  # carry on; the store's override is applied at the next tick
            silences, flaps, incidents = previous.silences, previous.flaps, previous.incidents
            incidents.graph = graph
        else:
            silences = SilenceMuter(tz=config.timezone)
            flaps = FlapDetector()
            incidents = IncidentTracker(graph, id_factory=incident_id)
        if previous is not None and same_modes:
            modes = previous.modes
        else:  # new rules; the PV's last value and the override carry over
            modes = ModeTracker.from_config(config.modes, mode_schedule(config), now=now,
                                            previous=previous.modes if previous else None)
        incidents.recovery_grace = config.noise.recovery_grace
        incidents.ioc_min = config.noise.ioc_group_min
        incidents.ioc_window = config.noise.ioc_group_window
        mode_muter = ModeMuter.from_checks(config.checks, modes)
        deps = DependencyMuter(graph, incidents.failing, attributed=incidents.root_of,
                               held=incidents.is_held)
        flap_muter = FlapMuter(flaps)
        return cls(
            modes, silences, schedule, graph, incidents, flaps,
            MutePipeline([mode_muter, schedule, silences, deps, flap_muter]),
            MutePipeline([mode_muter, schedule, silences, flap_muter]),
        )
