"""The v1 config language as pydantic models (the YAML schema only).

Unknown keys are errors everywhere (extra="forbid"). Cross-references between
sections (depends_on, sources, people, teams, channels) are checked by
`crossref.py` once the whole file is parsed, so that all errors come at once.
"""

from __future__ import annotations

import re
import zoneinfo
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    PrivateAttr,
    Tag,
    ValidationInfo,
    field_validator,
    model_validator,
)

from ..timefmt import format_duration, parse_duration
from .types import Duration, Secret, SecretValue

ID_PATTERN = r"^[A-Za-z][A-Za-z0-9_.-]*$"
# Ids end up in store columns and in notification keys built from several of them
# (incident/destination/level): 100 characters keeps every such key within its column.
ID_MAX = 100
Id = Annotated[str, Field(pattern=ID_PATTERN, max_length=ID_MAX)]
SEVERITY_NAMES = ("minor", "major", "invalid")
AlarmSeverityName = Literal["minor", "major", "invalid"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True, frozen=True)


# --- storage, modes, sources ---------------------------------------------------------


SCHEMA_NAME = r"^[a-z0-9_]{1,63}$"


def schema_for(beamline: str) -> str:
    """The default PostgreSQL schema of a beamline: `I04-1` -> `i04_1`."""
    return re.sub(r"[^a-z0-9_]", "_", beamline.lower())[:63] or "_"


class StorageConfig(Strict):
    model_config = ConfigDict(populate_by_name=True)

    url: str = "sqlite:///beamwatch.db"
    retention: Duration = 7 * 86400
    # PostgreSQL: the schema this beamline's tables live in (default: from `beamline:`),
    # so beamlines can share one database (docs/decisions/0012)
    schema_: str | None = Field(None, alias="schema")

    @field_validator("schema_")
    @classmethod
    def _schema_name(cls, v: str | None) -> str | None:
        if v is not None and not re.match(SCHEMA_NAME, v):
            raise ValueError(f"{v!r} is not a schema name: lowercase letters, digits and _, "
                             f"at most 63")
        return v

    @model_validator(mode="after")
    def _schema_needs_postgres(self) -> StorageConfig:
        if self.schema_ is not None:
            if self.url.startswith("sqlite"):
                raise ValueError("storage.schema is for PostgreSQL only: with SQLite each "
                                 "beamline has its own file")
            _usable_schema(self.schema_)
        return self

    @field_validator("url")
    @classmethod
    def _known_backend(cls, url: str) -> str:
        if not url.startswith(("sqlite://", "postgresql")):
            raise ValueError("storage.url must be sqlite:///PATH or postgresql+psycopg://…")
        return url


class WebConfig(Strict):
    # HOST:PORT the HTTP API (heartbeats in, /healthz) is served on by `beamwatch run`;
    # port 0: any free port (logged); "" or "off": no HTTP server
    listen: str = "127.0.0.1:8080"
    url: str | None = None  # the public address, for links in messages
    # who may change things through the API (ack, silence, mode): NAME -> bearer token
    # (NAME_file: a file holding it); NAME is who the change is logged as
    tokens: dict[Id, SecretValue] = {}
    # a reverse proxy that authenticates people puts their name in this header; trusted
    # only from the proxies' addresses
    trusted_proxy_header: str | None = Field(None, pattern=r"^[A-Za-z0-9-]{1,64}$")
    trusted_proxies: list[str] = ["127.0.0.1", "::1"]

    @field_validator("listen")
    @classmethod
    def _host_port(cls, v: str) -> str:
        if v.strip().lower() in ("", "off"):
            return ""
        host, sep, port = v.strip().rpartition(":")
        if not sep or not host or not port.isdigit() or int(port) > 65535:
            raise ValueError(f"'{v}' is not HOST:PORT (e.g. 127.0.0.1:8080, [::1]:8080, "
                             "0.0.0.0:8080), or off")
        return v.strip()

    @property
    def address(self) -> tuple[str, int] | None:
        """(host, port) to listen on, or None when the HTTP server is off."""
        if not self.listen:
            return None
        host, _, port = self.listen.rpartition(":")
        return host.strip("[]"), int(port)


class ModeScheduleEntry(Strict):
    """The beamline is in `mode` for `duration` from each start (cron or RRULE)."""

    mode: str
    cron: str | None = None  # when the mode starts (croniter syntax)
    rrule: str | None = None
    start: datetime | None = None  # for rrule: the first occurrence
    duration: Duration

    @model_validator(mode="after")
    def _one_rule(self) -> ModeScheduleEntry:
        if (self.cron is None) == (self.rrule is None):
            raise ValueError("give exactly one of cron: or rrule:")
        return self


class ModesConfig(Strict):
    names: list[Id] = ["user", "unattended", "maintenance", "shutdown"]
    default: str = "user"
    from_pv: str | None = None
    map: dict[str, str] = {}  # raw PV value -> mode name
    schedule: list[ModeScheduleEntry] = []  # e.g. machine development every Tuesday

    @model_validator(mode="after")
    def _default_is_a_mode(self) -> ModesConfig:
        if self.default not in self.names:
            raise ValueError(f"default mode '{self.default}' is not in names {self.names}")
        for raw, name in self.map.items():
            if name not in self.names:
                raise ValueError(f"map: '{raw}' maps to unknown mode '{name}'")
        for entry in self.schedule:
            if entry.mode not in self.names:
                raise ValueError(f"schedule: unknown mode '{entry.mode}'")
        return self


SOURCE_KINDS = ("ca", "pva", "http", "sql", "archiver")


class SourceConfig(Strict):
    """A named connection. `ca` and `pva` exist by default; `http` and `sql` are named;
    `archiver` (an EPICS Archiver Appliance) is a history backend, not a live input:
    checks' plots and history reach back into it (sources/archiver.py)."""

    kind: Literal["ca", "pva", "http", "sql", "archiver"]
    # ca, pva
    addr_list: list[str] | None = None  # EPICS_CA_ADDR_LIST / EPICS_PVA_ADDR_LIST
    connect_timeout: Duration = 5.0
    # an HA standby connects in advance, so a takeover does not wait for the PVs; false:
    # it connects only when it takes over (half the clients on each IOC, a slower takeover)
    warm_standby: bool = True
    # http
    base_url: str | None = None  # checks' get:/post: paths are relative to it
    headers: dict[str, SecretValue] = {}
    username: str | None = None  # basic auth, with password:
    verify: bool = True  # TLS certificates
    # sql: a SQLAlchemy URL (mysql+pymysql://, postgresql+psycopg://, sqlite:///);
    # archiver: the appliance (http://host:17665) or its retrieval (…:17668/retrieval)
    url: SecretValue | None = None
    password: SecretValue | None = None  # http basic auth, or the database's
    # http, sql and archiver
    timeout: Duration = 10.0  # one request / one statement
    max_connections: int = Field(4, ge=1, le=64)

    @model_validator(mode="after")
    def _complete(self) -> SourceConfig:
        if self.kind == "http" and not self.base_url:
            raise ValueError("kind http needs base_url: (e.g. http://bl04i-control:8080)")
        if self.kind == "sql" and not self.url:
            raise ValueError("kind sql needs url: (e.g. mysql+pymysql://reader@ispyb/ispyb)")
        if self.kind == "archiver":
            if not self.url:
                raise ValueError("kind archiver needs url: (e.g. http://archiver:17665)")
            if not self.url.get().startswith(("http://", "https://")):
                raise ValueError("url: an archiver's url must be http:// or https://")
        mine = {"ca": {"addr_list", "connect_timeout", "warm_standby"},
                "pva": {"addr_list", "connect_timeout", "warm_standby"},
                "http": {"base_url", "headers", "username", "password", "verify", "timeout",
                         "max_connections"},
                "sql": {"url", "password", "timeout", "max_connections"},
                "archiver": {"url", "timeout", "verify"}}[self.kind]
        stray = sorted(k for k in self.model_fields_set - mine - {"kind"})
        if stray:
            raise ValueError(f"{', '.join(stray)}: not a setting of "
                             f"{'an' if self.kind[0] in 'aeiou' else 'a'} {self.kind} source")
        return self


# --- checks --------------------------------------------------------------------------


class Levels(Strict):
    minor: float | None = None
    major: float | None = None

    @model_validator(mode="after")
    def _one_level(self) -> Levels:
        if self.minor is None and self.major is None:
            raise ValueError("give at least one of minor, major")
        return self


class AllOf(Strict):
    """Redundancy: the check fails because of these only when ALL of them fail."""

    all_of: list[str] = Field(min_length=2)


DependencyRef = Annotated[str, Field(pattern=r"^(group:)?[A-Za-z][A-Za-z0-9_.-]*$")]


class ModeConditions(Strict):
    """Other limits in one beamline mode (e.g. looser vacuum limits in maintenance)."""

    above: Levels | None = None
    below: Levels | None = None
    when: str | None = None
    severity: AlarmSeverityName | None = None


# --- beamwatch's own health (internal checks, the outbound heartbeat) ----------------

INTERNAL_SOURCE = "internal"
INTERNAL_PREFIX = "beamwatch."
INTERNAL_GROUP = "beamwatch"
# metric -> what its value is (the docs and `beamwatch check` say the same)
INTERNAL_METRICS: dict[str, str] = {
    "store": "seconds the store has been failing or not answering (0: writable)",
    "quarantine": "rows the store refused for good in the last hour",
    "outbox": "seconds the oldest due notification has waited undelivered",
    "delivery": "notifications that failed permanently in the last hour",
    "ca": "percent of Channel Access channels disconnected",
    "loop": "event-loop lag in seconds (the worst of the last few seconds)",
    "samples": "seconds since the last sample from any Channel Access source",
}
# the built-in checks, added unless the config declares the same id or turns them off
INTERNAL_CHECKS: tuple[dict[str, Any], ...] = (
    {"id": "beamwatch.store", "name": "beamwatch store writable", "above": {"major": 30}},
    {"id": "beamwatch.quarantine", "name": "beamwatch rows quarantined",
     "above": {"minor": 0}},
    {"id": "beamwatch.outbox", "name": "beamwatch outbox moving",
     "above": {"minor": 120, "major": 600}},
    {"id": "beamwatch.delivery", "name": "beamwatch permanent delivery failures",
     "above": {"minor": 0}},
    {"id": "beamwatch.ca", "name": "beamwatch CA channels connected", "above": {"major": 50},
     "for": "30s"},
    {"id": "beamwatch.loop", "name": "beamwatch event loop on time",
     "above": {"minor": 1, "major": 5}, "for": "10s"},
    # shown, not alarmed, by default: CA sends a PV only when it changes, so minutes with
    # no sample are normal on a quiet beamline; a busy one sets e.g. above: {major: 300}
    {"id": "beamwatch.samples", "name": "beamwatch samples arriving"},
)


def _http_url(v: Secret | None) -> Secret | None:
    if v is not None and not v.get().startswith(("http://", "https://")):
        raise ValueError("must be an http:// or https:// URL")  # never echo a secret
    return v


HttpSecret = Annotated[SecretValue, AfterValidator(_http_url)]


class HeartbeatConfig(Strict):
    """A dead-man's switch: GET `url` every `every` while beamwatch is healthy
    (Healthchecks, Uptime Kuma push monitors); `fail_url` instead while it is not."""

    url: HttpSecret
    every: Duration = 60.0
    timeout: Duration = 10.0
    fail_url: HttpSecret | None = None

    @field_validator("every", "timeout")
    @classmethod
    def _positive(cls, v: float) -> float:
        if v <= 0:
            raise ValueError("must be more than 0s")
        return v


class MonitorConfig(Strict):
    checks: bool = True  # add the built-in beamwatch.* checks (INTERNAL_CHECKS)
    heartbeat: HeartbeatConfig | None = None


class AgeLevels(Strict):
    """`age:` limits: durations (`{minor: 5m, major: 15m}`)."""

    minor: Duration | None = None
    major: Duration | None = None


class FreeLevels(Strict):
    """`free_below:` limits: a percentage of the disk ("20%") or an amount ("50GB")."""

    minor: str | float | None = None
    major: str | float | None = None


class ArchiveRef(Strict):
    """Where a check's past is in an archiver: `archive: {source: arch, pv: NAME}`;
    both optional (the first archiver source; the check's own pv:/pva:)."""

    source: str | None = None
    pv: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _shape(cls, data: Any) -> Any:
        if not isinstance(data, dict | ArchiveRef):
            raise ValueError("give archive: false, or archive: {source: NAME, pv: NAME}")
        return data

    @field_validator("pv")
    @classmethod
    def _named(cls, v: str | None) -> str | None:
        if v is not None and not v.strip():
            raise ValueError("the archived PV name is empty")
        return v


def _archive_kind(v: Any) -> str:
    return "archive-off" if v is False else "ArchiveRef"  # one branch's errors, not both


FORECAST_MAX_POINTS = 60  # checks.forecast.MAX_POINTS: points a forecast window holds
FORECAST_MIN_POINTS = 8  # fewer points can never show a significant trend (Mann–Kendall)


class ForecastConfig(Strict):
    """`forecast: {horizon: 2h, window: 30m}`: alarm when the trend of the last `window`
    reaches one of the check's limits within `horizon` (checks/forecast.py)."""

    horizon: Duration
    window: Duration
    min_points: int = Field(10, ge=FORECAST_MIN_POINTS, le=FORECAST_MAX_POINTS)
    method: Literal["theil-sen", "linear"] = "theil-sen"
    # the forecast's severity: that of the limit it forecasts ("same"), one level lower
    # ("lower": a forecast MAJOR pages as MINOR), or always this one
    severity: Literal["same", "lower", "minor", "major"] = "same"
    unit: str = Field("", max_length=20)  # shown after values in the message ("%", "K")

    @field_validator("horizon", "window")
    @classmethod
    def _positive(cls, v: float) -> float:
        if v <= 0:
            raise ValueError("must be more than 0s")
        return v

    @model_validator(mode="after")
    def _enough_points(self) -> ForecastConfig:
        if self.window < self.min_points:  # one point a second at most
            raise ValueError(f"window {format_duration(self.window)} is too short for "
                             f"min_points {self.min_points} (one point a second at most): "
                             f"give a window of at least {self.min_points}s")
        return self


# The input keys of a check; exactly one is given. (pva/http/sql/files: issue 14)
INPUT_KEYS = ("pv", "pva", "internal", "get", "post", "query", "file", "disk", "log", "read",
              "heartbeat", "alert")
POLLED_EVERY = {"get": 30.0, "post": 30.0, "query": 60.0, "file": 30.0, "disk": 60.0,
                "log": 10.0, "read": 30.0}  # default `every:` of polled inputs


class CountConfig(Strict):
    """`count: {times: 3, within: 60s}`: alarm as soon as the check has left OK this many
    times within the window, even if each time was shorter than `for:` (Phoebus's
    `count`, Icinga's soft states). Without `for:`, a single departure alarms once it
    has lasted `within`."""

    times: int
    within: Duration

    @field_validator("times")
    @classmethod
    def _at_least_two(cls, v: int) -> int:
        if v < 2:
            raise ValueError(f"must be at least 2, not {v} (1 time is every alarm: "
                             "leave count: out)")
        return v

    @field_validator("within")
    @classmethod
    def _positive(cls, v: float) -> float:
        if v <= 0:
            raise ValueError("the window must be more than 0s (e.g. 60s)")
        return v


class CheckConfig(Strict):
    id: Id
    name: str | None = None
    group: str = "default"
    labels: dict[str, str] = Field(default_factory=dict)
    description: str | None = None  # shown in every message about the check and in status
    runbook: str | None = None  # what to do: shown in messages and status (guidance, displays)
    # inputs: exactly one
    pv: str | None = None  # Channel Access
    pva: str | None = None  # PVAccess
    source: str | None = None  # a named source; "ca"/"pva" by default for pv:/pva:
    internal: str | None = None  # one of beamwatch's own health metrics (INTERNAL_METRICS)
    get: str | None = None  # HTTP GET of a path of the source's base_url (or a full URL)
    post: str | None = None  # HTTP POST, with `body:`
    body: Any = None
    query: str | None = None  # SQL: one SELECT/WITH statement, read-only
    file: str | None = None  # a glob: the newest matching file's age (s), or `measure:`
    disk: str | None = None  # a path: free space in % (with free_below: in %) or bytes
    log: str | None = None  # a log file, tailed across rotation: matches of `match:`
    read: str | None = None  # a JSON or YAML file: the value at `json:`
    heartbeat: Duration | None = None  # POST /api/heartbeat/ID at least this often
    # Prometheus Alertmanager's webhook (POST /api/alertmanager): the alerts whose labels
    # equal all of these (sources/alertmanager.py); {} takes every alert no check before
    # it took
    alert: dict[Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")], str] | None = None
    # what of the input is the value
    json_: str | None = Field(None, alias="json")  # JMESPath into a JSON body or file
    regex: str | None = None  # on an HTTP body: group 1 (or the match) is the value
    column: str | None = None  # SQL: this column of the first row (else the first)
    match: str | None = None  # log: the regex whose matches are counted
    window: Duration | None = None  # log: matches, file: growth, over the last window
    measure: Literal["value", "status", "latency", "cert_days", "age", "count", "growth",
                     "free_percent", "free_bytes", "matches", "last"] | None = None
    every: Duration | None = None  # polled inputs: how often (POLLED_EVERY by default)
    timeout: Duration | None = None  # polled inputs: one poll (the source's by default)
    token: SecretValue | None = None  # heartbeat: the bearer token a POST must carry
    # its past before beamwatch ran: an archiver source and PV (ArchiveRef); false: none
    archive: Annotated[Annotated[Literal[False], Tag("archive-off")] | Annotated[ArchiveRef,
                       Tag("ArchiveRef")], Discriminator(_archive_kind)] | None = None
    # sugar over `above:`/`below:` on a file's age and a disk's free space
    age: AgeLevels | None = None
    free_below: FreeLevels | None = None
    # conditions
    above: Levels | None = None
    below: Levels | None = None
    hysteresis: float = Field(0.0, ge=0)
    when: str | None = None
    severity: AlarmSeverityName = "major"  # the severity a true `when:` gives
    epics_severity: bool | None = None
    stale: Duration | None = None
    disconnect_grace: Duration = 10.0
    # alarm logic
    for_: Duration = Field(0.0, alias="for")
    latch: bool = False
    count: CountConfig | None = None  # alarm when out of limits `times` within `within`
    # check ids, "group:NAME", {all_of: [...]}
    depends_on: list[DependencyRef | AllOf] = Field(default_factory=list)
    forecast: ForecastConfig | None = None  # alarm before a limit is crossed
    modes: list[str] | None = None
    # mode name -> the conditions in that mode
    by_mode: dict[str, ModeConditions] = Field(default_factory=dict)

    model_config = ConfigDict(populate_by_name=True)

    def in_mode(self, mode: str) -> CheckConfig:
        """This check with the conditions `by_mode` gives for `mode` (itself if none)."""
        override = self.by_mode.get(mode)
        if override is None:
            return self
        data = self.model_dump(by_alias=True, exclude={"by_mode"})
        data.update(override.model_dump(exclude_none=True))
        return CheckConfig.model_validate(data)

    @field_validator("forecast")
    @classmethod
    def _forecast_fits(cls, fc: ForecastConfig | None, info: ValidationInfo
                       ) -> ForecastConfig | None:
        """Here, not in _consistent, so that the error points at the forecast: line (the
        fields it needs are declared before it, and already validated)."""
        if fc is None:
            return fc
        data = info.data
        if not (data.get("above") or data.get("below")):
            raise ValueError("needs numeric limits to forecast a crossing (above:, below:, "
                             "free_below: or age:), not only when:")
        polled = [k for k in POLLED_EVERY if data.get(k) is not None]
        if polled:
            every = data.get("every") or POLLED_EVERY[polled[0]]
            polls = fc.window / every
            if polls < fc.min_points:
                raise ValueError(
                    f"window {format_duration(fc.window)} holds only {polls:.0f} polls at "
                    f"every: {format_duration(every)}; min_points {fc.min_points} needs a "
                    f"window of at least {format_duration(fc.min_points * every)}")
        return fc

    def _internal_consistent(self) -> None:
        if self.source is not None:
            raise ValueError("source: is for pv: checks; internal: checks read beamwatch itself")
        if not self.id.startswith(INTERNAL_PREFIX):
            raise ValueError(f"an internal: check's id starts with '{INTERNAL_PREFIX}' "
                             f"(e.g. {INTERNAL_PREFIX}{self.internal})")

    @property
    def depends_on_ids(self) -> list[str]:
        """Every id or group reference named in depends_on, flattened."""
        out: list[str] = []
        for entry in self.depends_on:
            out.extend(entry.all_of if isinstance(entry, AllOf) else [entry])
        return out

    @property
    def title(self) -> str:
        return self.name or self.id

    @property
    def input_key(self) -> str:
        """Which input this check reads: one of INPUT_KEYS."""
        return next(k for k in INPUT_KEYS if getattr(self, k) is not None)

    @property
    def input_source(self) -> str:
        """The source that feeds this check: a named source (http, sql, a second ca),
        `ca`/`pva` for PVs, `internal` for beamwatch's own health, `files` for files,
        disks and logs, `heartbeat` for heartbeats."""
        key = self.input_key
        if key == "internal":
            return INTERNAL_SOURCE
        if key in ("pv", "pva"):
            return self.source or ("ca" if key == "pv" else "pva")
        if key in ("get", "post", "query"):
            return self.source or ""
        return {"heartbeat": "heartbeat", "alert": "alertmanager"}.get(key, "files")

    @property
    def input_address(self) -> str:
        """What the source watches for it: the PV name, the internal metric; for polled
        inputs and heartbeats the check's own id (the source reads the rest from it)."""
        if self.pv is not None or self.pva is not None:
            return self.pv or self.pva or ""
        return self.internal or self.id

    @property
    def poll_every(self) -> float:
        return self.every if self.every is not None else POLLED_EVERY.get(self.input_key, 30.0)

    @model_validator(mode="before")
    @classmethod
    def _internal_defaults(cls, data: Any) -> Any:
        """`- {id: beamwatch.outbox, above: {major: 300}}` overrides a built-in check
        without repeating its input; internal checks are in group `beamwatch`."""
        if not isinstance(data, dict):
            return data
        cid = data.get("id")
        if isinstance(cid, str) and cid.startswith(INTERNAL_PREFIX) and "pv" not in data \
                and "internal" not in data and cid[len(INTERNAL_PREFIX):] in INTERNAL_METRICS:
            data = {**data, "internal": cid[len(INTERNAL_PREFIX):]}
        if data.get("internal") is not None and "group" not in data:
            data = {**data, "group": INTERNAL_GROUP}
        return data

    @field_validator("internal")
    @classmethod
    def _known_metric(cls, v: str | None) -> str | None:
        if v is not None and v not in INTERNAL_METRICS:
            raise ValueError(f"unknown internal metric '{v}' (known: "
                             f"{', '.join(INTERNAL_METRICS)})")
        return v

    @model_validator(mode="before")
    @classmethod
    def _sugar(cls, data: Any) -> Any:
        """`age: {major: 5m}` is `above:` on a file's age; `free_below: {minor: 20%}` is
        `below:` on a disk's free space (in % when the limits are, else in bytes);
        `heartbeat: 5m` alone is `above: {major: 300}` on the last beat's age; an
        `alert:` check has the labels it selects on as its own (for routes, silences)."""
        if not isinstance(data, dict):
            return data
        alert, labels = data.get("alert"), data.get("labels", {})
        if isinstance(alert, dict) and isinstance(labels, dict):
            data = {**data, "labels": {**{k: v for k, v in alert.items()
                                          if isinstance(v, str)}, **labels}}
        if "age" in data and "above" not in data and isinstance(data["age"], dict):
            data = {**data, "above": {k: _seconds(v) for k, v in data["age"].items()}}
        if data.get("heartbeat") is not None and not {"above", "below", "when"} & set(data):
            # the value is the last beat's age: MAJOR once it is older than the period
            data = {**data, "above": {"major": _seconds(data["heartbeat"])}}
        free = data.get("free_below")
        if isinstance(free, dict) and "below" not in data:
            levels, unit = {}, None
            for name, raw in free.items():
                number, unit_here = _amount(raw)
                if unit is not None and unit_here != unit:
                    raise ValueError("free_below: give every level in % or every level "
                                     "as an amount, not both")
                levels[name], unit = number, unit_here
            data = {**data, "below": levels}
            if "measure" not in data:
                data = {**data, "measure": "free_percent" if unit == "%" else "free_bytes"}
        return data

    def _inputs_consistent(self) -> None:
        given = [k for k in INPUT_KEYS if getattr(self, k) is not None]
        if not given:
            raise ValueError("a check needs an input: pv: (Channel Access), pva: "
                             "(PVAccess), get:/post: (HTTP), query: (SQL), file:, disk:, "
                             "log:, read:, heartbeat:, alert: (Alertmanager) or internal: "
                             "(beamwatch's own health)")
        if len(given) > 1:
            raise ValueError(f"give exactly one input, not {' and '.join(given)}")
        key = given[0]
        if key in ("get", "post", "query") and not self.source:
            kind = "sql" if key == "query" else "http"
            raise ValueError(f"{key}: needs source: NAME, a source of kind {kind}")
        if key in ("file", "disk", "log", "read", "heartbeat", "internal", "alert") \
                and self.source:
            raise ValueError(f"source: is for pv:, pva:, get:/post: and query: checks, "
                             f"not {key}:")
        extras = {"body": ("post",), "regex": ("get", "post"), "column": ("query",),
                  "json_": ("get", "post", "read"), "match": ("log",), "window": ("log", "file"),
                  "token": ("heartbeat",), "age": ("file",), "free_below": ("disk",),
                  "every": tuple(POLLED_EVERY), "timeout": tuple(POLLED_EVERY)}
        for extra, inputs in extras.items():
            if getattr(self, extra) is not None and key not in inputs:
                extra = extra.rstrip("_")
                raise ValueError(f"{extra}: goes with {' or '.join(f'{i}:' for i in inputs)}, "
                                 f"not {key}:")
        if key == "alert" and (self.above or self.below or self.when):
            raise ValueError("alert: checks are judged by the alerts' own severity; drop "
                             "above:/below:/when:")
        if key == "heartbeat" and (self.heartbeat or 0) <= 0:
            raise ValueError("heartbeat: the period must be more than 0s (e.g. 5m)")
        if key == "log" and not self.match:
            raise ValueError("log: needs match: REGEX (what to count)")
        if self.measure is not None and self.measure not in MEASURES[key]:
            raise ValueError(f"measure: {self.measure} is not one of "
                             f"{', '.join(MEASURES[key])} for {key}:")
        for name in ("regex", "match"):
            pattern = getattr(self, name)
            if pattern is not None:
                try:
                    re.compile(pattern)
                except re.error as e:
                    raise ValueError(f"{name}: not a regular expression: {e}") from None
        if self.json_ is not None:
            _check_jmespath(self.json_)
        if key == "query":
            problem = read_only_problem(self.query or "")
            if problem:
                raise ValueError(f"query: {problem}")

    @model_validator(mode="after")
    def _consistent(self) -> CheckConfig:
        self._inputs_consistent()
        if self.internal is not None:
            self._internal_consistent()
        if self.internal is None and self.id.startswith(INTERNAL_PREFIX):
            raise ValueError(f"ids starting with '{INTERNAL_PREFIX}' are for beamwatch's own "
                             "checks (internal: METRIC)")
        if self.pv is not None and not self.pv.strip():
            raise ValueError("pv: the PV name is empty")
        if self.above and self.above.minor is not None and self.above.major is not None:
            if self.above.major < self.above.minor:
                raise ValueError("above: major must be >= minor (major is the worse level)")
        if self.below and self.below.minor is not None and self.below.major is not None:
            if self.below.major > self.below.minor:
                raise ValueError("below: major must be <= minor (major is the worse level)")
        return self


MEASURES: dict[str, tuple[str, ...]] = {
    "pv": ("value",), "pva": ("value",), "internal": ("value",), "read": ("value",),
    "get": ("value", "status", "latency", "cert_days"),
    "post": ("value", "status", "latency", "cert_days"), "query": ("value",),
    "file": ("age", "count", "growth"), "disk": ("free_percent", "free_bytes"),
    "log": ("matches", "last"), "heartbeat": ("age",), "alert": ("value",),
}

def _check_jmespath(expression: str) -> None:
    import jmespath.exceptions  # here: only configs with json: pay for the import

    try:
        jmespath.compile(expression)
    except jmespath.exceptions.JMESPathError as e:
        raise ValueError(f"json: '{expression}' is not a JMESPath expression: "
                         f"{str(e).splitlines()[0].removeprefix('Invalid jmespath expression: ')}"
                         ) from None


def _seconds(raw: Any) -> Any:
    """A duration in seconds; anything else is left for the schema to complain about."""
    try:
        return parse_duration(raw) if isinstance(raw, str) else raw
    except ValueError:
        return raw


_UNITS = {"%": 1, "B": 1, "KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12,
          "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}


def _amount(raw: Any) -> tuple[float, str]:
    """'20%' -> (20, '%'); '50GB' -> (5e10, 'B'); 1e9 -> (1e9, 'B')."""
    if isinstance(raw, (int, float)) and not isinstance(raw, bool):
        return float(raw), "B"
    m = re.fullmatch(r"\s*([0-9.]+)\s*(%|[KMGT]?i?B)\s*", str(raw), re.IGNORECASE)
    if not m:
        raise ValueError(f"free_below: '{raw}' is not a percentage (20%) or an amount (50GB)")
    unit = m.group(2).upper()
    factor = _UNITS.get(unit)
    if factor is None:
        raise ValueError(f"free_below: unknown unit in '{raw}'")
    return float(m.group(1)) * factor, "%" if unit == "%" else "B"


_WRITES = re.compile(r"\b(INSERT|UPDATE|DELETE|MERGE|UPSERT|CREATE|ALTER|DROP|TRUNCATE|"
                     r"GRANT|REVOKE|CALL|EXEC|EXECUTE|COPY|INTO|ATTACH|DETACH|PRAGMA|"
                     r"VACUUM)\b", re.IGNORECASE)


# Strings and comments are blanked before looking for words, under two readings: standard
# SQL (PostgreSQL, SQLite: '' escapes a quote, -- starts a comment) and MySQL's (\' escapes
# a quote too, # starts a comment, -- only before a space). A query must pass under both,
# so no text that one database reads as a string or comment hides a statement from us.
_HIDDEN = (
    r"'([^']|'')*'|\"[^\"]*\"|--[^\n]*|/\*.*?\*/",
    r"'([^'\\]|\\.|'')*'|\"([^\"\\]|\\.|\"\")*\"|`[^`]*`|--(?=\s|$)[^\n]*|#[^\n]*"
    r"|/\*.*?\*/",
)


def read_only_problem(query: str) -> str | None:
    """Why a query is not one plain SELECT/WITH statement, or None. The check runs it in
    a read-only transaction too; this refuses at load what that would refuse later."""
    for hidden in _HIDDEN:
        problem = _one_select_problem(re.sub(hidden, _blank, query, flags=re.S))
        if problem:
            return problem
    return None


def _blank(m: re.Match[str]) -> str:
    # MySQL/MariaDB run the text of /*! … */ and /*M! … */: not a comment to us
    return " /*! " if m.group(0).startswith(("/*!", "/*M!")) else " "


def _one_select_problem(text: str) -> str | None:
    if "/*!" in text:
        return "no executable comments (/*! … */): MySQL runs their text"
    text = text.strip().rstrip(";").strip()
    if not text:
        return "empty"
    if ";" in text:
        return "one statement only (no ';' between statements)"
    first = text.split(None, 1)[0].upper()
    if first not in ("SELECT", "WITH"):
        return f"only SELECT or WITH queries are allowed (read-only), not {first}"
    word = _WRITES.search(text)
    if word:
        return f"'{word.group(1).upper()}' has no place in a read-only query"
    return None


# --- people, teams, channels, routes (notifications) -----------------------------------

CHANNEL_KINDS = ("email", "slack", "signal", "whatsapp", "webhook")


def _check_tz(v: str | None) -> str | None:
    if v is None:
        return v
    try:
        zoneinfo.ZoneInfo(v)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown timezone '{v}' (use an IANA name like Europe/London)") from None
    return v


Timezone = Annotated[str, AfterValidator(_check_tz)]


class QuietHours(Strict):
    start: str = "22:00"
    end: str = "07:00"
    channels: list[str] = []  # channel kinds allowed at night, e.g. [signal]

    @field_validator("start", "end")
    @classmethod
    def _hhmm(cls, v: str) -> str:
        if not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", v):
            raise ValueError(f"'{v}' is not a time of day HH:MM")
        return v


class SubscriptionConfig(Strict):
    checks: list[str] = []
    groups: list[str] = []
    severity: AlarmSeverityName = "minor"


class PersonConfig(Strict):
    name: str | None = None
    email: str | None = None
    slack: str | None = None
    signal: str | None = None
    whatsapp: str | None = None
    webhook: str | None = None
    order: list[Literal["email", "slack", "signal", "whatsapp", "webhook"]] | None = None
    quiet_hours: QuietHours | None = None
    timezone: Timezone | None = None
    subscriptions: list[SubscriptionConfig] = []


class RotaConfig(Strict):
    every: Duration = 7 * 86400
    start: datetime
    order: list[Id] = Field(min_length=1)
    timezone: Timezone | None = None


class OverrideConfig(Strict):
    person: Id
    start: datetime
    end: datetime

    @model_validator(mode="after")
    def _ordered(self) -> OverrideConfig:
        if self.end <= self.start:
            raise ValueError("end must be after start")
        return self


class TeamConfig(Strict):
    members: list[Id] = Field(min_length=1)
    rota: RotaConfig | None = None
    ical: str | None = None  # an iCalendar file or URL whose events name the person on call
    ical_refresh: Duration = 900.0  # how often a running engine reads the feed again
    overrides: list[OverrideConfig] = []


class ChannelConfig(Strict):
    url: SecretValue | None = None  # an Apprise URL
    kind: Literal["webhook", "email", "slack", "apprise", "alertmanager"] | None = None
    # webhook
    webhook_url: SecretValue | None = None
    headers: dict[str, SecretValue] = {}
    # email (SMTP)
    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_user: str | None = None
    smtp_password: SecretValue | None = None
    smtp_starttls: bool = False
    smtp_ssl: bool | None = None  # implicit TLS (SMTPS); default: on for port 465
    sender: str | None = None
    to: list[str] = []
    # slack (bot token, so messages can be updated in place)
    token: SecretValue | None = None
    channel: str | None = None
    api_url: str | None = None
    # alertmanager: url: is its address (http://alertmanager:9093); token: a bearer token,
    # or username:/password: basic auth; labels: added to every alert posted
    username: str | None = None
    password: SecretValue | None = None
    labels: dict[Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")], str] = {}
    ends_after: Duration = 86400.0  # a firing alert's endsAt: this long after it is posted
    timeout: Duration = 10.0
    fallback_after: Duration | None = None  # a person's channel failing this long: use their next
    expire: Duration = 3600.0  # older undelivered messages are folded into one summary
    people: bool = False  # this channel's settings carry people's addresses of its kind

    @model_validator(mode="after")
    def _complete(self) -> ChannelConfig:
        kind = self.kind or ("apprise" if self.url else None)
        need = {
            None: "give url: (an Apprise URL) or kind: webhook|email|slack",
            "apprise": None if self.url else "kind apprise needs url:",
            "webhook": None if self.webhook_url or self.url else "kind webhook needs webhook_url:",
            "email": None if self.smtp_host and self.sender
            else "kind email needs smtp_host: and sender:",
            "slack": None if self.token and self.channel
            else "kind slack needs token: and channel:",
            "alertmanager": None if self.url else "kind alertmanager needs url: (e.g. "
            "http://alertmanager:9093)",
        }[kind]
        if need:
            raise ValueError(need)
        if kind == "alertmanager":
            _http_url(self.url)
            if self.token and self.username:
                raise ValueError("give token: (bearer) or username:/password: (basic), "
                                 "not both")
        else:
            stray = sorted({"username", "password", "labels", "ends_after"}
                           & self.model_fields_set)
            if stray:
                raise ValueError(f"{', '.join(stray)}: only for kind alertmanager")
        return self


Receiver = Annotated[str, Field(pattern=r"^(person|team|oncall|channel):[A-Za-z0-9_.#@-]+$")]


class EscalationConfig(Strict):
    after: Duration
    to: list[Receiver] = Field(min_length=1)


class RouteMatch(Strict):
    # alarm: the route takes alarms (the default: a route never sends mode changes unless
    # it asks); mode: it takes beamline mode changes, selected by the route's `modes:`
    kind: Literal["alarm", "mode"] = "alarm"
    check: list[str] | str | None = None
    group: list[str] | str | None = None
    severity: AlarmSeverityName | None = None  # this severity and worse
    labels: dict[str, str] = {}


class RouteConfig(Strict):
    match: RouteMatch = RouteMatch()
    modes: list[str] | None = None
    to: list[Receiver] = Field(min_length=1)
    group_wait: Duration = 0.0
    repeat: Duration | None = None
    escalate: list[EscalationConfig] | EscalationConfig | None = None
    send_resolved: bool = True
    continue_: bool = Field(False, alias="continue")

    model_config = ConfigDict(populate_by_name=True)

    @property
    def takes_modes(self) -> bool:
        """True: this route announces beamline mode changes, never alarms."""
        return self.match.kind == "mode"

    @property
    def escalations(self) -> list[EscalationConfig]:
        if self.escalate is None:
            return []
        return self.escalate if isinstance(self.escalate, list) else [self.escalate]


class MaintenanceConfig(Strict):
    """A recurring window (cron or RRULE) that mutes what `match` selects (reason SCHEDULE)."""

    id: Id
    match: list[str] = Field(min_length=1)  # matchers: "group=vacuum", "check=~fe-.*"
    cron: str | None = None
    rrule: str | None = None
    start: datetime | None = None  # for rrule: the first occurrence
    duration: Duration
    timezone: Timezone | None = None
    reason: str

    @model_validator(mode="after")
    def _one_rule(self) -> MaintenanceConfig:
        if (self.cron is None) == (self.rrule is None):
            raise ValueError("give exactly one of cron: or rrule:")
        return self


AM_SEVERITIES = {"critical": "major", "error": "major", "page": "major", "warning": "minor",
                 "info": "minor"}


class AlertmanagerConfig(Strict):
    """Alerts in from Prometheus Alertmanager's webhook (sources/alertmanager.py)."""

    # an alert's `severity` label -> the check's severity; a value not listed gives `default`
    severities: dict[str, Literal["minor", "major", "invalid", "ok"]] = AM_SEVERITIES
    default: AlarmSeverityName = "major"
    # a firing alert Alertmanager has not sent again within this is forgotten (as its own
    # resolve_timeout does): more than the receiver's repeat_interval (4h by default)
    forget_after: Duration = 5 * 3600.0

    @field_validator("forget_after")
    @classmethod
    def _positive(cls, v: float) -> float:
        if v <= 0:
            raise ValueError("must be more than 0s")
        return v


class NoiseConfig(Strict):
    settle: Duration = 10.0  # a consequence may be seen this long before its root
    recovery_grace: Duration = 30.0
    ioc_group_min: int = Field(5, ge=2)  # this many PVs of one IOC lost within
    ioc_group_window: Duration = 5.0  # this window are one "IOC unreachable" incident


class DigestConfig(Strict):
    """The morning digest: at `at` (the config's timezone) every day, a summary of the
    last `window` — the incidents, who was paged and whether they acked, what is still
    wrong — to `to` (channels and people)."""

    at: str = "08:00"
    window: Duration = 24 * 3600.0
    to: list[Annotated[str, Field(pattern=r"^(person|channel):[A-Za-z0-9_.#@-]+$")]] = Field(
        min_length=1)

    @field_validator("at")
    @classmethod
    def _hhmm(cls, v: str) -> str:
        if not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", v):
            raise ValueError(f"'{v}' is not a time of day HH:MM")
        return v


# --- the Slack bot ---------------------------------------------------------------------

SlackMember = Annotated[str, Field(pattern=r"^([UW][A-Z0-9]{2,}|@[A-Za-z0-9._-]+|\*)$")]


class SlackRoles(Strict):
    """Who may do what from Slack: member ids (U0123ABC), @usergroup handles, or * (anyone
    in the workspace). The highest role a user has wins: viewer < operator < admin.
    operator unset: the people of the config who have `slack:` set."""

    admin: list[SlackMember] = []
    operator: list[SlackMember] | None = None
    viewer: list[SlackMember] = ["*"]


class SlackConfig(Strict):
    mode: Literal["socket", "http"] = "socket"
    bot_token: SecretValue  # xoxb-…
    app_token: SecretValue | None = None  # xapp-…, Socket Mode
    signing_secret: SecretValue | None = None  # HTTP mode: requests to /slack/events
    api_url: str | None = None  # the Web API; default https://slack.com/api/
    command: str = Field("/beamwatch", pattern=r"^/[a-z0-9_-]{1,31}$")
    roles: SlackRoles = SlackRoles()

    @model_validator(mode="after")
    def _mode_needs(self) -> SlackConfig:
        if self.mode == "socket" and not self.app_token:
            raise ValueError("mode socket needs app_token: (or app_token_file:), the xapp- "
                             "app-level token with connections:write")
        if self.mode == "http" and not self.signing_secret:
            raise ValueError("mode http needs signing_secret: (or signing_secret_file:)")
        return self


# --- the file ------------------------------------------------------------------------


class Config(Strict):
    beamline: str
    timezone: str = "UTC"
    storage: StorageConfig = StorageConfig()
    web: WebConfig = WebConfig()
    modes: ModesConfig = ModesConfig()
    sources: dict[Id, SourceConfig] = {}
    checks: list[CheckConfig] = []
    people: dict[Id, PersonConfig] = {}
    teams: dict[Id, TeamConfig] = {}
    channels: dict[Id, ChannelConfig] = {}
    routes: list[RouteConfig] = []
    maintenance: list[MaintenanceConfig] = []
    # who gets a page when routing fails (a bug, a receiver that resolves to nobody) or a
    # channel fails for good: a page goes somewhere, with the error, never nowhere
    fallback: list[Receiver] = []
    noise: NoiseConfig = NoiseConfig()
    monitor: MonitorConfig = MonitorConfig()  # beamwatch's own health: checks, heartbeat
    templates: str | None = None  # a folder of Jinja2 templates overriding the defaults
    slack: SlackConfig | None = None  # the Slack bot (beamwatch.slack), run by `beamwatch run`
    digest: DigestConfig | None = None  # a daily summary (paging/digest.py)
    alertmanager: AlertmanagerConfig = AlertmanagerConfig()  # alerts in (alert: checks)
    _index: tuple[list, dict] | None = PrivateAttr(default=None)  # check(): by id

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        return _check_tz(v)

    def check(self, check_id: str) -> CheckConfig:
        """The check with this id (KeyError if none): from an index of `checks`, built
        again when the list is another (a model_copy with new checks). A scan per call
        was quadratic at start-up with 100k checks (the heartbeats' restore: hours)."""
        index = self._index
        if index is None or index[0] is not self.checks:
            index = self._index = (self.checks, {c.id: c for c in reversed(self.checks)})
        try:
            return index[1][check_id]
        except KeyError:
            raise KeyError(check_id) from None

    def find_check(self, check_id: str) -> CheckConfig | None:
        """The check with this id, or None (the index of `check`)."""
        try:
            return self.check(check_id)
        except KeyError:
            return None

    def has_check(self, check_id: str) -> bool:
        """Is there a check of this id (the index, not a list of 100k ids per call)?"""
        return self.find_check(check_id) is not None

    @property
    def check_ids(self) -> list[str]:
        return [c.id for c in self.checks]

    @property
    def storage_schema(self) -> str | None:
        """The PostgreSQL schema of this beamline's store; None on SQLite."""
        if self.storage.url.startswith("sqlite"):
            return None
        return self.storage.schema_ or schema_for(self.beamline)

    @model_validator(mode="after")
    def _default_schema_usable(self) -> Config:
        if self.storage.schema_ is None and not self.storage.url.startswith("sqlite"):
            try:
                _usable_schema(schema_for(self.beamline))
            except ValueError as e:
                raise ValueError(f"{e} (derived from beamline: {self.beamline!r}); set "
                                 f"storage.schema") from None
        return self


def _usable_schema(name: str) -> None:
    if name.startswith("pg_") or name == "information_schema":
        raise ValueError(f"schema {name!r} is reserved by PostgreSQL")


def dump_safe(model: BaseModel) -> dict[str, Any]:
    """The config as plain data with secrets shown as <secret>."""
    return model.model_dump(mode="json", by_alias=True, exclude_none=True)
