"""What deciding produces: one value the engine stores as one batch.

The Decider (beamwatch.paging) returns a Decision from every call — for a
list of transitions, for a tick, for a mode PV sample, at start-up — and the
engine commits all of it in one transaction with the transitions it belongs
to: nothing decided is lost, nothing is notified before it is stored.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .core import AlarmState, Transition
from .incident import Incident
from .modes import ModeRecord


@dataclass
class Decision:
    # the transitions decided on, annotated (incident, mute reason); same order as given
    transitions: list[Transition] = field(default_factory=list)
    # outbox rows: notifications to send; `transition_index` points into `transitions`
    rows: list[dict] = field(default_factory=list)
    # log entries for alarms whose fate (paged, attached, muted) was decided later
    fates: list[tuple[Transition, AlarmState]] = field(default_factory=list)
    incidents: list[Incident] = field(default_factory=list)  # snapshots that changed
    mode_changes: list[ModeRecord] = field(default_factory=list)  # for the mode log

    def __bool__(self) -> bool:
        return bool(self.transitions or self.rows or self.fates or self.incidents
                    or self.mode_changes)

    def absorb(self, other: Decision | None) -> None:
        """Add what another decision (no transitions of its own) holds to this one."""
        if not other:
            return
        self.rows += [{**r, "transition_index": None} for r in other.rows]
        self.fates += other.fates
        self.incidents += other.incidents
        self.mode_changes += other.mode_changes
