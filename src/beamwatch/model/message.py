"""The message a notification carries: what every template and webhook body may show."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any, Literal

from .core import Severity

TOLD = "told:"  # receiver of a fan-out row: "whoever was told about this incident"
HELD = "/held"  # dedup-key suffix of a page offered again when quiet hours end

Kind = Literal["alarm", "ack", "resolve", "repeat", "escalation", "summary", "test", "reminder",
               "mode"]
KINDS: tuple[str, ...] = ("alarm", "ack", "resolve", "repeat", "escalation", "summary", "test",
                          "reminder", "mode")


@dataclass(frozen=True, slots=True)
class Related:
    """Another alarm named in a message: a consequence of the root cause, or
    one line of a summary."""

    check_id: str
    title: str
    severity: Severity
    value: str = ""
    muted: str | None = None  # the MuteReason, when it is muted (e.g. "DEPENDENCY")

    def __post_init__(self) -> None:
        object.__setattr__(self, "severity", Severity.parse(self.severity))

    def to_dict(self) -> dict[str, Any]:
        return {"check_id": self.check_id, "title": self.title,
                "severity": self.severity.name, "value": self.value, "muted": self.muted}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Related:
        return cls(**{k: v for k, v in data.items() if k in _RELATED_FIELDS})


_RELATED_FIELDS = frozenset(("check_id", "title", "severity", "value", "muted"))


@dataclass(frozen=True, slots=True)
class Message:
    """Everything a template or a webhook body may show about one notification.

    `time`/`since`/`until` are seconds since the epoch; `timezone` is how people read
    them. `id` identifies the notification (the outbox row): it is the same on
    every retry, so a receiver can drop duplicates. `thread_ref` is the `ref` of
    the first `Delivery` of this incident through the same destination: Slack
    updates that message in place and replies in its thread; email sets
    In-Reply-To/References.
    """

    kind: Kind
    beamline: str
    title: str
    severity: Severity
    check_ids: tuple[str, ...] = ()
    dedup_key: str = ""
    id: str | None = None
    previous_severity: Severity | None = None
    value: str = ""
    text: str = ""
    time: float = 0.0
    since: float | None = None
    incident_id: str | None = None
    mode: str | None = None
    link: str | None = None
    actor: str | None = None
    consequences: tuple[Related, ...] = ()
    alarms: tuple[Related, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)
    escalation_level: int = 0
    thread_ref: str | None = None
    timezone: str = "UTC"
    # kind "mode": the beamline mode changed from `previous_mode` to `mode`, decided by
    # `mode_source` (pv, override, schedule, expiry, default), by `actor` (an override's
    # author) for the reason in `text`, in force `until` (an override's end) if known
    previous_mode: str | None = None
    mode_source: str | None = None
    until: float | None = None
    # the check's `description:` and `runbook:` (what to do; imported Phoebus guidance,
    # displays and commands): shown in every message about the check
    description: str = ""
    runbook: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown message kind '{self.kind}' (one of {', '.join(KINDS)})")
        object.__setattr__(self, "severity", Severity.parse(self.severity))
        if self.previous_severity is not None:
            object.__setattr__(self, "previous_severity", Severity.parse(self.previous_severity))
        for name in ("check_ids", "consequences", "alarms"):
            object.__setattr__(self, name, tuple(getattr(self, name)))

    @property
    def check_id(self) -> str | None:
        return self.check_ids[0] if self.check_ids else None

    def threaded(self, ref: str | None) -> Message:
        return replace(self, thread_ref=ref)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe, for the outbox row; `from_dict` gives the same Message back."""
        out: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self)}
        out["severity"] = self.severity.name
        out["previous_severity"] = (
            None if self.previous_severity is None else self.previous_severity.name
        )
        out["check_ids"] = list(self.check_ids)
        out["consequences"] = [r.to_dict() for r in self.consequences]
        out["alarms"] = [r.to_dict() for r in self.alarms]
        out["labels"] = dict(self.labels)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Message:
        """The inverse of to_dict; keys it does not know are ignored (older/newer rows)."""
        known = {f.name for f in fields(cls)}
        kw = {k: v for k, v in data.items() if k in known}
        for key in ("consequences", "alarms"):
            kw[key] = tuple(
                r if isinstance(r, Related) else Related.from_dict(r) for r in kw.get(key, ())
            )
        return cls(**kw)
