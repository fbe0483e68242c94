"""Alerts in from Prometheus Alertmanager: its webhook (payload version 4) is POSTed to
`/api/alertmanager` (web/alertmanager.py) and each alert feeds one `alert:` check.

Mapping (docs/decisions/0009-alertmanager.md):
- An alert belongs to the first check, in the file's order, whose `alert:` labels all
  equal the alert's; `alert: {}` takes every alert no check before it took (a
  catch-all). An alert no check takes is answered as unmatched and not kept.
- Alerts are keyed by Alertmanager's fingerprint (a hash of the labels, computed here
  the same way when a sender leaves it out): the same alert sent again replaces itself.
- A check's value is the number of its alerts firing; its severity the worst of their
  `severity` labels through `alertmanager.severities` (critical -> major, warning ->
  minor by default); its message names them. No alert firing: OK. The labels all its
  firing alerts share travel with the sample: routes, silences and messages see them
  under the check's own labels (paging/decide.py).
- `status: resolved` ends an alert at once. A firing alert Alertmanager has not sent
  again within `alertmanager.forget_after` is forgotten, as Alertmanager's own
  resolve_timeout forgets an alert its sender stopped refreshing: Alertmanager resends
  a firing alert every repeat_interval, and sends no resolve for one silenced or
  inhibited there, so an alert it stopped sending is taken as over.
- Firing alerts are stored (`store/alerts.py`) before they are acted on, and taken
  back at start, so a restart neither clears an alarm that is up nor waits for the
  next resend.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from ..clock import Clock, SystemClock
from ..config.schema import Config
from ..model import Sample, Severity
from ..timefmt import format_duration
from .base import Sink
from .internal import InternalSample

log = logging.getLogger("beamwatch.sources")

ALERTMANAGER_SOURCE = "alertmanager"
FORGET_EVERY = 10.0  # seconds between looks for alerts past forget_after
NOTE_MAX = 300  # characters of a check's message naming its alerts
LABEL_MAX = 1024  # characters of one label name or value, annotation up to TEXT_MAX
TEXT_MAX = 4096
ALERTS_MAX = 1000  # alerts in one webhook (Alertmanager's max_alerts can cap it)


# --- the webhook payload (https://prometheus.io/docs/alerting/latest/configuration/
# #webhook_config); fields beamwatch does not read are allowed and ignored ------------

Text = Annotated[str, Field(max_length=TEXT_MAX)]
LabelName = Annotated[str, Field(min_length=1, max_length=LABEL_MAX)]
LabelValue = Annotated[str, Field(max_length=LABEL_MAX)]


class AlertIn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    status: Literal["firing", "resolved"]
    labels: dict[LabelName, LabelValue] = Field(min_length=1, max_length=100)
    annotations: dict[LabelName, Text] = Field({}, max_length=100)
    startsAt: Text = ""  # RFC 3339, nanoseconds allowed
    endsAt: Text = ""
    generatorURL: Text = ""
    fingerprint: Annotated[str, Field(max_length=64)] | None = None


class WebhookIn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    version: Literal["4"]
    status: Literal["firing", "resolved"] | None = None
    receiver: Text = ""
    groupKey: Text = ""
    externalURL: Text = ""
    truncatedAlerts: int = 0
    alerts: list[AlertIn] = Field(max_length=ALERTS_MAX)


# --- alerts ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AlertSample(InternalSample):
    """The sample of an `alert:` check: `labels` are those all its firing alerts share
    (Alertmanager's commonLabels), which routes and silences see beside the check's."""

    labels: Mapping[str, str] | None = None


@dataclass(frozen=True, slots=True)
class Alert:
    fingerprint: str
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    starts_at: float
    received: float  # when Alertmanager last sent it

    def row(self) -> dict:
        return {"fingerprint": self.fingerprint, "labels": dict(self.labels),
                "annotations": dict(self.annotations), "starts_at": self.starts_at,
                "received": self.received}

    @classmethod
    def from_row(cls, row: Mapping) -> Alert:
        return cls(row["fingerprint"], dict(row["labels"]), dict(row["annotations"]),
                   float(row["starts_at"]), float(row["received"]))

    @property
    def name(self) -> str:
        """`NodeDown (instance=i04-ws1:9100)`: the alertname and the labels that tell
        this alert from others of its name."""
        others = ", ".join(f"{k}={v}" for k, v in sorted(self.labels.items())
                           if k not in ("alertname", "severity"))
        name = self.labels.get("alertname", "alert")
        return f"{name} ({others})" if others else name


def fingerprint(labels: Mapping[str, str]) -> str:
    """A stable key for a label set, for senders that give no fingerprint."""
    text = "\xff".join(f"{k}\xfe{v}" for k, v in sorted(labels.items()))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


_FINGERPRINT = re.compile(r"^[0-9a-fA-F]{1,64}$")
_FRACTION = re.compile(r"(\.\d{6})\d+")  # Go's nanoseconds: Python reads microseconds


def parse_time(text: str, default: float) -> float:
    """RFC 3339 as Alertmanager writes it; Go's zero time or nonsense: `default`."""
    if not text or text.startswith("0001-"):
        return default
    try:
        return datetime.fromisoformat(_FRACTION.sub(r"\1", text.replace("Z", "+00:00"))
                                      ).timestamp()
    except (ValueError, OverflowError, OSError):
        return default


def severity_of(labels: Mapping[str, str], config: Config) -> Severity:
    """The alert's `severity` label through `alertmanager.severities`."""
    settings = config.alertmanager
    name = settings.severities.get(labels.get("severity", "").strip().lower(),
                                   settings.default)
    return Severity.parse(name)


def owner(labels: Mapping[str, str], config: Config) -> str | None:
    """The id of the first `alert:` check whose labels all equal the alert's."""
    for check in config.checks:
        if check.alert is not None and all(labels.get(k) == v for k, v in check.alert.items()):
            return check.id
    return None


@dataclass
class Plan:
    """What one webhook changes: alerts to keep (firing) and to drop (resolved)."""

    firing: list[Alert] = field(default_factory=list)
    resolved: list[str] = field(default_factory=list)  # fingerprints
    checks: set[str] = field(default_factory=set)  # the checks they feed
    unmatched: list[str] = field(default_factory=list)  # names of alerts no check takes


def plan(payload: WebhookIn, config: Config, now: float) -> Plan:
    """The webhook as changes; the same fingerprint twice in one payload: the last wins."""
    out = Plan()
    for a in payload.alerts:
        fp = a.fingerprint if a.fingerprint and _FINGERPRINT.match(a.fingerprint) \
            else fingerprint(a.labels)
        check_id = owner(a.labels, config)
        alert = Alert(fp, a.labels, a.annotations, parse_time(a.startsAt, now), now)
        if check_id is None:
            out.unmatched.append(alert.name)
            continue
        out.checks.add(check_id)
        out.firing = [f for f in out.firing if f.fingerprint != fp]
        out.resolved = [r for r in out.resolved if r != fp]
        if a.status == "firing":
            out.firing.append(alert)
        else:
            out.resolved.append(fp)
    return out


Keep = Callable[[list[dict], list[str]], Awaitable[None]]  # firing rows, gone fingerprints


@dataclass(frozen=True)
class Received:
    alerts: int
    checks: list[str]
    unmatched: list[str]


class AlertmanagerSource:
    kind = ALERTMANAGER_SOURCE

    def __init__(self, name: str, config: Config, clock: Clock | None = None):
        self.name = name
        self.config = config
        self.clock = clock or SystemClock()
        self.addresses: set[str] = set()
        self.alerts: dict[str, Alert] = {}  # fingerprint -> firing alert
        self.owners: dict[str, str] = {}  # fingerprint -> check id
        self.keep: Keep | None = None  # the store; set by the App (None: memory only)
        self._sink: Sink | None = None
        self._task: asyncio.Task | None = None
        self._lock = asyncio.Lock()  # webhooks and forgetting stored in arrival order

    @classmethod
    def from_config(cls, name: str, config: Config, clock: Clock | None = None):
        return cls(name, config, clock)

    # -- the Source protocol -------------------------------------------------------------

    def reconfigure(self, config: Config) -> None:
        """A reloaded config: the kept alerts go to the checks that now take them."""
        self.config = config
        self.owners = {}
        for fp, alert in list(self.alerts.items()):
            check_id = owner(alert.labels, config)
            if check_id is None:
                del self.alerts[fp]
            else:
                self.owners[fp] = check_id
        self.emit(sorted(self.addresses))

    def subscribe(self, addresses: Iterable[str]) -> None:
        self.addresses.update(addresses)

    def unsubscribe(self, addresses: Iterable[str]) -> None:
        self.addresses.difference_update(addresses)

    async def start(self, sink: Sink) -> None:
        self._sink = sink
        self.emit(sorted(self.addresses))  # every check has a value at once: OK or firing
        self._task = asyncio.ensure_future(self._forgetting())

    async def stop(self) -> None:
        self._sink = None
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    # -- alerts --------------------------------------------------------------------------

    def restore(self, rows: Iterable[Mapping]) -> None:
        """The alerts stored before a restart, unless forgotten meanwhile."""
        now = self.clock.now()
        for row in rows:
            alert = Alert.from_row(row)
            check_id = owner(alert.labels, self.config)
            if check_id is not None and now - alert.received <= self.forget_after:
                self.alerts[alert.fingerprint] = alert
                self.owners[alert.fingerprint] = check_id

    @property
    def forget_after(self) -> float:
        return self.config.alertmanager.forget_after

    async def receive(self, payload: WebhookIn) -> Received:
        """One webhook: stored (raises if the store cannot: Alertmanager sends it again),
        then handed to the engine."""
        async with self._lock:
            changes = plan(payload, self.config, self.clock.now())
            if self.keep is not None and (changes.firing or changes.resolved):
                await self.keep([a.row() for a in changes.firing], changes.resolved)
            for fp in changes.resolved:
                self.alerts.pop(fp, None)
                self.owners.pop(fp, None)
            for alert in changes.firing:
                self.alerts[alert.fingerprint] = alert
                self.owners[alert.fingerprint] = owner(alert.labels, self.config) or ""
        self.emit(sorted(changes.checks))
        if changes.unmatched:
            log.info("alerts no alert: check takes: %s", ", ".join(changes.unmatched[:10]))
        return Received(len(payload.alerts), sorted(changes.checks), changes.unmatched)

    async def forget(self) -> list[str]:
        """Drop the alerts not sent again within forget_after; the checks they fed."""
        async with self._lock:
            now = self.clock.now()
            old = [fp for fp, a in self.alerts.items() if now - a.received > self.forget_after]
            if not old:
                return []
            if self.keep is not None:
                try:
                    await self.keep([], old)
                except Exception as e:  # noqa: BLE001 - restored and dropped at next start
                    log.warning("forgotten alerts not removed from the store: %s", e)
            checks = sorted({self.owners.get(fp, "") for fp in old} - {""})
            for fp in old:
                log.info("alert %s forgotten: not sent again for %s", self.alerts[fp].name,
                         format_duration(self.forget_after))
                self.alerts.pop(fp, None)
                self.owners.pop(fp, None)
        self.emit(checks)
        return checks

    def sample(self, check_id: str, now: float) -> Sample:
        mine = sorted((a for fp, a in self.alerts.items() if self.owners.get(fp) == check_id),
                      key=lambda a: (a.starts_at, a.name))
        if not mine:
            return InternalSample(check_id, 0, now, now, note="no alert firing")
        severity = max(severity_of(a.labels, self.config) for a in mine)
        first = mine[0]
        if len(mine) == 1:
            summary = first.annotations.get("summary") or first.annotations.get(
                "description") or first.annotations.get("message") or ""
            note = f"{first.name} firing" + (f": {summary}" if summary else "")
        else:
            note = f"{len(mine)} alerts firing: " + ", ".join(a.name for a in mine)
        if len(note) > NOTE_MAX:
            note = note[:NOTE_MAX] + "…"
        common = dict(first.labels)
        for a in mine[1:]:
            common = {k: v for k, v in common.items() if a.labels.get(k) == v}
        return AlertSample(check_id, len(mine), max(a.received for a in mine), now,
                           severity=severity, note=note, labels=common)

    def emit(self, check_ids: Iterable[str]) -> None:
        now = self.clock.now()
        batch = [self.sample(c, now) for c in check_ids if c in self.addresses]
        if self._sink is not None and batch:
            self._sink(batch)

    async def _forgetting(self) -> None:
        while True:
            await asyncio.sleep(FORGET_EVERY)
            try:
                await self.forget()
            except Exception:  # a bug here must not end forgetting for good
                log.exception("forgetting old alerts failed")
