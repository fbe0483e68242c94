"""Mute stages: one interface for every reason not to notify an active alarm.

Modelled on Alertmanager's `notify/mute.go`: each suppressor is a `Muter`
that only answers a question ("does this stage mute this alert now, and why?")
and records its reason. A muted alarm is still shown and logged with that
reason — muting only decides whether anybody is *notified*.

The order of the stages (`MutePipeline.ORDER`)
-----------------------------------------------
    MODE → SCHEDULE → SILENCE → DEPENDENCY → FLAPPING

Muters are pure queries, so whether an alert is muted does not depend on the
order (it is muted if any stage mutes it). The order decides only which
reason is *recorded* — one per transition — and how much work is done. The
stages are ordered from the slowest-changing, widest, most deliberate reason
to the fastest-changing, derived one, so that the recorded reason changes as
rarely as possible and names a human decision when there is one:

1. MODE — a property of the whole beamline that changes a few times a week
   ("not active in mode shutdown"). When the check is not meant to run at all,
   every other explanation is beside the point. A set lookup: cheapest.
2. SCHEDULE — a maintenance window, planned in advance for a class of checks;
   the broad, planned answer comes before an ad-hoc one.
3. SILENCE — a person's decision about this alert, with an author, a reason and
   an end. It goes before DEPENDENCY (unlike Alertmanager, which runs inhibition
   before silences) because it is stable: if ana silenced the gauge while she
   replaces it, the log should say so for the whole job, rather than flip
   between "root cause: fe-vacuum" and "silenced by ana" as the vacuum
   comes and goes.
4. DEPENDENCY — derived from other alarms and from timing (the settle window);
   it changes within seconds, so it is recorded only when nothing more
   deliberate applies.
5. FLAPPING — derived from the alarm's own recent history, the weakest
   explanation: a flapping check that is also the consequence of a known root
   cause should say "root cause: …", which tells the reader more.

Stateful detectors (flapping, the incident tracker) are *fed* by the engine on
every transition, never from inside a muter, so muting one stage early can
never starve a later stage of the history it needs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from ..model import MuteReason, Severity

if TYPE_CHECKING:
    from ..config.schema import CheckConfig

# Names of the built-in labels every alert has; silences and windows match on them.
CHECK, GROUP, SEVERITY, MODE = "check", "group", "severity", "mode"


@dataclass(frozen=True, slots=True)
class Alert:
    """What the mute stages see of one active alarm.

    `since` is when the alarm took its present severity; `mode` is the
    beamline mode at decision time, as stamped by the engine (None: unknown,
    the ModeMuter then asks its tracker).
    """

    check_id: str
    group: str = "default"
    labels: Mapping[str, str] = field(default_factory=dict)
    severity: Severity = Severity.MAJOR
    since: float = 0.0
    mode: str | None = None

    @classmethod
    def of(cls, check: CheckConfig, severity: Severity, since: float,
           mode: str | None = None) -> Alert:
        """The alert of a configured check."""
        return cls(check.id, check.group, dict(check.labels), severity, since, mode)

    def label_set(self) -> dict[str, str]:
        """The labels matchers see: the check's own labels plus the built-in
        ones (check, group, severity in lower case, mode). Built-ins win, so a
        label cannot pretend to be another check."""
        out = dict(self.labels)
        out[CHECK] = self.check_id
        out[GROUP] = self.group
        out[SEVERITY] = self.severity.name.lower()
        if self.mode is not None:
            out[MODE] = self.mode
        return out


@runtime_checkable
class Muter(Protocol):
    """One mute stage. `mutes` is a pure query: no side effects, no I/O."""

    reason: MuteReason

    def mutes(self, alert: Alert, now: float) -> str | None:
        """A human detail of why `alert` is muted at `now`
        (e.g. "silenced by ana until 14:00 UTC: replacing gauge"), or None."""


@dataclass(frozen=True, slots=True)
class Mute:
    """The decision of the pipeline: the reason recorded, and its human detail."""

    reason: MuteReason
    detail: str

    def __str__(self) -> str:
        return f"{self.reason}: {self.detail}"


class MutePipeline:
    """Runs mute stages in the fixed `ORDER`, whatever order they are given in.

    Several stages may share a reason (e.g. two SCHEDULE sources); they keep
    their given order within that reason.
    """

    ORDER: tuple[MuteReason, ...] = (
        MuteReason.MODE,
        MuteReason.SCHEDULE,
        MuteReason.SILENCE,
        MuteReason.DEPENDENCY,
        MuteReason.FLAPPING,
    )

    def __init__(self, stages: Iterable[Muter]):
        rank = {reason: i for i, reason in enumerate(self.ORDER)}
        stages = list(stages)
        for s in stages:
            if s.reason not in rank:
                raise ValueError(f"mute stage {s!r} has unknown reason {s.reason!r}")
        self.stages: tuple[Muter, ...] = tuple(sorted(stages, key=lambda s: rank[s.reason]))

    def decide(self, alert: Alert, now: float) -> Mute | None:
        """The first stage that mutes `alert`, or None: notify it."""
        for stage in self.stages:
            detail = stage.mutes(alert, now)
            if detail is not None:
                return Mute(stage.reason, detail)
        return None

    def explain(self, alert: Alert, now: float) -> list[Mute]:
        """Every stage that would mute `alert` — for the dashboard's "why muted"."""
        out = []
        for stage in self.stages:
            detail = stage.mutes(alert, now)
            if detail is not None:
                out.append(Mute(stage.reason, detail))
        return out
