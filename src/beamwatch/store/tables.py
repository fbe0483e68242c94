"""The beamline log's tables (SQLAlchemy Core). Alembic migrations mirror these.

One database holds the log of transitions, each check's alarm state and
latest value, a per-minute value history, the outbox of notifications with
every delivery attempt, and a queue of commands from the CLI and other
front ends to the running engine.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

metadata = MetaData()

transitions = Table(
    "transitions", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("time", Float, nullable=False),
    Column("check_id", String(200), nullable=False),
    Column("old", Integer, nullable=False),
    Column("new", Integer, nullable=False),
    Column("current", Integer, nullable=False),
    Column("acked", Boolean, nullable=False, default=False),
    Column("value", JSON),
    Column("message", Text, nullable=False, default=""),
    Column("reason", String(40), nullable=False),
    Column("actor", String(200)),
    Column("muted", String(20)),
    Column("mute_detail", Text),
    Column("incident_id", String(64)),
    Index("ix_transitions_time", "time"),
    Index("ix_transitions_check_time", "check_id", "time"),
)

alarm_states = Table(
    "alarm_states", metadata,
    Column("check_id", String(200), primary_key=True),
    Column("severity", Integer, nullable=False),
    Column("current", Integer, nullable=False),
    Column("acked", Boolean, nullable=False),
    Column("acked_by", String(200)),
    Column("acked_at", Float),
    Column("since", Float, nullable=False),
    Column("message", Text, nullable=False, default=""),
    Column("value", JSON),
    Column("pending", Integer),
    Column("pending_since", Float),
)

latest_values = Table(
    "latest_values", metadata,
    Column("check_id", String(200), primary_key=True),
    Column("time", Float, nullable=False),
    Column("value", JSON),
    Column("severity", Integer, nullable=False),  # the check's evaluation, before delays
    Column("connected", Boolean, nullable=False),
    Column("server", String(200)),
    Column("message", Text),
)

value_history = Table(
    "value_history", metadata,
    Column("check_id", String(200), primary_key=True),
    Column("minute", Integer, primary_key=True),  # epoch seconds // 60
    Column("vmin", Float),
    Column("vmax", Float),
    Column("vlast", JSON),
    Column("count", Integer, nullable=False),  # samples with a value
    # connection and the record's own EPICS severity, as data (since 0004; NULL before)
    Column("connected", Boolean),  # at the end of the minute
    Column("lost_at", Float),  # the first disconnection in the minute
    Column("back_at", Float),  # the last reconnection in the minute
    Column("record_severity", Integer),  # the worst in the minute (0..3)
    Column("record_severity_at", Float),  # when it was first reached
    Column("record_severity_last", Integer),  # at the end of the minute
    Index("ix_value_history_minute", "minute"),
)

notifications = Table(
    "notifications", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("dedup_key", String(300), nullable=False, unique=True),
    Column("transition_id", Integer, ForeignKey("transitions.id", ondelete="SET NULL")),
    Column("incident_id", String(64)),
    Column("check_id", String(200)),
    Column("kind", String(20), nullable=False),  # alarm, resolve, ack, repeat, escalation...
    Column("receiver", String(200), nullable=False),  # person:ana, channel:ops-slack
    Column("destination", String(200), nullable=False),  # person:ana/email, channel:ops...
    Column("route", String(200)),  # which rule decided
    Column("message", JSON, nullable=False),
    Column("status", String(20), nullable=False),  # pending, sending, sent, failed, expired
    Column("attempts", Integer, nullable=False, default=0),
    Column("created_at", Float, nullable=False),
    Column("next_attempt_at", Float, nullable=False),
    Column("expires_at", Float),
    Column("claimed_by", String(100)),
    Column("claimed_until", Float),
    Column("sent_at", Float),
    Column("ref", JSON),  # e.g. the Slack channel and ts, to update the message later
    Column("last_error", Text),
    Index("ix_notifications_due", "status", "next_attempt_at"),
)

attempts = Table(
    "attempts", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("notification_id", Integer, ForeignKey("notifications.id", ondelete="CASCADE"),
           nullable=False),
    Column("time", Float, nullable=False),
    Column("ok", Boolean, nullable=False),
    Column("retry", Boolean, nullable=False),
    Column("detail", Text),
    Column("duration", Float),
    Index("ix_attempts_notification", "notification_id"),
)

commands = Table(
    "commands", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("time", Float, nullable=False),
    Column("verb", String(40), nullable=False),  # ack, ...
    Column("args", JSON, nullable=False),
    Column("actor", String(200), nullable=False),
    Column("status", String(20), nullable=False),  # queued, done, failed
    Column("result", Text),
    Column("done_at", Float),
)

engine_heartbeat = Table(
    "engine_heartbeat", metadata,
    Column("name", String(100), primary_key=True),
    Column("pid", Integer),
    Column("host", String(200)),
    Column("started", Float),
    Column("beat", Float, nullable=False),
    Column("config_file", Text),
    Column("role", String(20)),  # leader, standby (since 0006; one row per instance)
    Column("url", String(300)),  # the instance's web front end, if it serves one
)

# --- noise control (migration 0002): silences, mode overrides and changes, incidents ----------

silences = Table(
    "silences", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),  # never reused: see below
    Column("matchers", JSON, nullable=False),  # [{"name": "check", "op": "=", "value": "x"}]
    Column("starts", Float, nullable=False),
    Column("ends", Float, nullable=False),  # set to the time it was ended early, if it was
    Column("author", String(200), nullable=False),
    Column("reason", Text, nullable=False),
    Column("created", Float, nullable=False),
    Column("remind_before", Float),  # None: the muter's default; 0: never
    Column("expired_by", String(200)),
    Column("expired_at", Float),
    Index("ix_silences_ends", "ends"),
    sqlite_autoincrement=True,
)

mode_overrides = Table(
    "mode_overrides", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("mode", String(100), nullable=False),
    Column("author", String(200), nullable=False),
    Column("reason", Text, nullable=False),
    Column("starts", Float, nullable=False),
    Column("until", Float, nullable=False),
    Column("cleared_at", Float),  # ended early (cleared, or replaced by a newer override)
    Column("cleared_by", String(200)),
    Index("ix_mode_overrides_until", "until"),
    sqlite_autoincrement=True,
)

mode_changes = Table(
    "mode_changes", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("time", Float, nullable=False),
    Column("old", String(100), nullable=False),
    Column("new", String(100), nullable=False),
    Column("source", String(20), nullable=False),  # pv, override, expiry, schedule, default
    Column("author", String(200)),
    Column("reason", Text, nullable=False, default=""),
    Index("ix_mode_changes_time", "time"),
)

incidents = Table(
    "incidents", metadata,
    Column("id", String(64), primary_key=True),
    Column("kind", String(10), nullable=False),  # check, ioc
    Column("root", String(300), nullable=False),  # check id, or "ioc:host:port"
    Column("opened", Float, nullable=False),
    Column("severity", Integer, nullable=False),
    Column("consequences", JSON, nullable=False),  # check ids, in attachment order
    Column("failing", JSON, nullable=False),
    Column("resolved", Float),
    Column("server", String(200)),
    Column("disconnected", JSON, nullable=False),
    Column("promoted_from", String(64)),
    Column("updated", Float, nullable=False),
    Index("ix_incidents_opened", "opened"),
    Index("ix_incidents_resolved", "resolved"),
)

# --- store hardening (migration 0003) --------------------------------------------------------

quarantine = Table(
    "quarantine", metadata,  # rows the database refused for good, kept as text
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("time", Float, nullable=False),
    Column("kind", String(20), nullable=False),  # transition, notification, incidents
    Column("check_id", String(200)),
    Column("error", Text, nullable=False),
    Column("payload", Text, nullable=False),  # JSON
    Index("ix_quarantine_time", "time"),
)

# --- front ends (migration 0005): the audit log, runtime overlays over the config file -------

audit = Table(
    "audit", metadata,  # every change asked for by a person, from any front end, done or refused
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("time", Float, nullable=False),
    Column("actor", String(200), nullable=False),  # a configured person id, or who they are
    Column("via", String(20), nullable=False),  # cli, slack, web
    Column("action", String(40), nullable=False),  # ack, silence, mode set, subscribe, ...
    Column("target", String(300), nullable=False, default=""),
    Column("detail", Text, nullable=False, default=""),
    Column("outcome", String(20), nullable=False),  # done, queued, refused, failed
    Index("ix_audit_time", "time"),
)

overlays = Table(
    "overlays", metadata,  # changes made at run time over the YAML file: the newest wins
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("time", Float, nullable=False),
    Column("kind", String(20), nullable=False),  # subscriptions, quiet_hours, oncall
    Column("target", String(200), nullable=False),  # a person id; for oncall a team id
    Column("value", JSON),
    Column("actor", String(200), nullable=False),
    Column("via", String(20), nullable=False),
    Column("ended_at", Float),  # replaced by a newer one, or reset to the file's
    Column("ended_by", String(200)),
    Index("ix_overlays_active", "ended_at"),
    sqlite_autoincrement=True,
)

# --- an HA pair (migration 0006): who leads -----------------------------------------------

leases = Table(
    "leases", metadata,  # one row per lease; "engine": the instance that decides and sends
    Column("name", String(50), primary_key=True),
    Column("holder", String(200)),  # the instance id; NULL when released
    Column("host", String(200)),
    Column("pid", Integer),
    Column("token", Integer, nullable=False, default=0),  # fencing: +1 at each new holder
    Column("renewals", Integer, nullable=False, default=0),  # +1 at each renewal
    Column("acquired", Float),  # database time (epoch seconds), never a host's clock
    Column("expires", Float, nullable=False, default=0.0),
    Column("url", String(300)),
)

# --- alerts in (migration 0008): Alertmanager's firing alerts, kept across a restart ------

alerts = Table(
    "alerts", metadata,  # one row per firing alert (by Alertmanager's fingerprint)
    Column("fingerprint", String(64), primary_key=True),
    Column("labels", JSON, nullable=False),
    Column("annotations", JSON, nullable=False),
    Column("starts_at", Float, nullable=False),
    Column("received", Float, nullable=False),  # when Alertmanager last sent it
)

# --- a facility (migration 0007): whose store this is, who is on call now --------------------

store_meta = Table(
    "store_meta", metadata,  # key -> value; "beamline": the beamline this store belongs to
    Column("key", String(40), primary_key=True),
    Column("value", String(200), nullable=False),
)

oncall_now = Table(
    "oncall_now", metadata,  # the running engine's answer to "who is on call", per team
    Column("team", String(100), primary_key=True),
    Column("person", String(100)),  # None: nobody
    Column("name", String(200)),  # the person's name from the config
    Column("since", Float),
    Column("until", Float),
    Column("reason", Text, nullable=False),
    Column("time", Float, nullable=False),  # when the engine last wrote it
)
