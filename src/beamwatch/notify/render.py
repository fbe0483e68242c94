"""Jinja2 templates: one per message kind and format, overridable from a folder.

Template names are ``KIND.FORMAT.j2``; a missing one falls back to
``default.FORMAT.j2``. KIND is one of alarm, ack, resolve, repeat, escalation,
summary, test, reminder, mode; FORMAT one of:

    subject  one line: email subject, Apprise title, webhook "summary"
    text     plain text: email text part, Signal/WhatsApp/ntfy body
    html     email HTML part (autoescaped)
    mrkdwn   Slack text: the notification/fallback text and thread replies
    blocks   Slack Block Kit: must render to a JSON list of blocks

A user folder (config `templates:`) is searched first. Files there named
``_*.j2`` are helpers for ``{% include %}``/``{% import %}``. Every file in the
folder is compiled, and every KIND.FORMAT combination rendered with sample
messages, when the `Renderer` is made: a syntax error, an unknown variable
(StrictUndefined) or blocks that are not JSON are reported then, with the file
and line, not at 3 a.m. when the alarm fires.

The context of every template:

    m        the `Message` (m.kind, m.beamline, m.title, m.severity, m.previous_severity,
             m.value, m.text, m.time, m.since, m.incident_id, m.mode, m.link,
             m.actor, m.check_ids, m.consequences, m.alarms, m.labels,
             m.description, m.runbook (the check's; may be several lines), ...)
    label    the kind as a word: ALARM, ACKNOWLEDGED, RESOLVED, STILL ACTIVE,
             ESCALATED, SUMMARY, TEST, REMINDER, MODE
             (kind "mode": m.previous_mode -> m.mode, m.mode_source, m.actor = the
             override's author, m.text = the reason, m.until = the override's end)
    subject  the rendered subject (not in the subject template itself)

Filters: ``localtime`` (epoch seconds -> "2026-01-05 09:00:00 GMT" in m.timezone,
or ``localtime(tz)``), ``duration`` (seconds -> "1h30m"), ``mrkdwn`` (escape
&, <, > for Slack), ``emoji`` (severity -> a Slack emoji code).
Extension ``do`` is on, so blocks templates can build a list and ``tojson`` it.
"""

from __future__ import annotations

import json
import zoneinfo
from collections.abc import Iterator
from datetime import datetime
from importlib import resources
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import jinja2

from ..config.types import format_duration
from ..model import Severity
from .base import KINDS, Message, Related, TemplateError

Format = Literal["subject", "text", "html", "mrkdwn", "blocks"]
FORMATS: tuple[str, ...] = ("subject", "text", "html", "mrkdwn", "blocks")

LABELS = {
    "alarm": "ALARM",
    "ack": "ACKNOWLEDGED",
    "resolve": "RESOLVED",
    "repeat": "STILL ACTIVE",
    "escalation": "ESCALATED",
    "summary": "SUMMARY",
    "test": "TEST",
    "reminder": "REMINDER",
    "mode": "MODE",
}
EMOJI = {
    Severity.OK: ":large_green_circle:",
    Severity.MINOR: ":large_yellow_circle:",
    Severity.MAJOR: ":red_circle:",
    Severity.INVALID: ":purple_circle:",
}


def default_folder() -> Path:
    return Path(str(resources.files("beamwatch.notify") / "templates"))


def _localtime(ts: float | None, tz: str = "UTC", fmt: str = "%Y-%m-%d %H:%M:%S %Z") -> str:
    if ts is None:
        return ""
    return datetime.fromtimestamp(float(ts), zoneinfo.ZoneInfo(tz)).strftime(fmt)


def _mrkdwn(text: Any) -> str:
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class _CompiledTemplates(jinja2.BytecodeCache):
    """Compiled templates shared by the renderers of one process (the config check and
    the running registry build one each): a template is compiled once per source text."""

    def __init__(self) -> None:
        self._code: dict[str, bytes] = {}

    def load_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        code = self._code.get(bucket.key)
        if code is not None:
            bucket.bytecode_from_string(code)  # dropped by jinja if the source changed

    def dump_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        self._code[bucket.key] = bucket.bytecode_to_string()


_COMPILED = _CompiledTemplates()


class Renderer:
    """Renders a `Message` in one format; `folder` overrides the default templates."""

    def __init__(self, folder: str | Path | None = None, *, validate: bool = True):
        self.folder = Path(folder).expanduser() if folder else None
        if self.folder is not None and not self.folder.is_dir():
            raise TemplateError(str(self.folder), None, "templates: is not a folder")
        loaders: list[jinja2.BaseLoader] = []
        if self.folder is not None:
            loaders.append(jinja2.FileSystemLoader(str(self.folder)))
        loaders.append(jinja2.FileSystemLoader(str(default_folder())))
        self.env = jinja2.Environment(
            loader=jinja2.ChoiceLoader(loaders),
            undefined=jinja2.StrictUndefined,
            autoescape=lambda name: bool(name) and name.endswith(".html.j2"),
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=False,
            extensions=["jinja2.ext.do"],
            bytecode_cache=_COMPILED,
        )
        self.env.filters.update(
            duration=lambda s: "" if s is None else format_duration(max(0.0, float(s))),
            mrkdwn=_mrkdwn,
            emoji=lambda sev: EMOJI[Severity.parse(sev)],
        )
        self.env.filters["localtime"] = jinja2.pass_context(
            lambda ctx, ts, tz=None, fmt="%Y-%m-%d %H:%M:%S %Z": _localtime(
                ts, tz or ctx["m"].timezone, fmt
            )
        )
        self._names: dict[tuple[str, str], str] = {}
        if self.folder is not None:
            self._compile_user_folder()
        for kind in KINDS:
            for fmt in FORMATS:
                self._names[(kind, fmt)] = self._pick(kind, fmt)
        if validate:
            self.validate()

    def _compile_user_folder(self) -> None:
        assert self.folder is not None
        for path in sorted(self.folder.iterdir()):
            if path.is_dir() or path.name.startswith("."):
                continue
            name = path.name
            parts = name.split(".")
            if not name.startswith("_") and not (
                len(parts) == 3 and parts[0] in (*KINDS, "default") and parts[1] in FORMATS
                and parts[2] == "j2"
            ):
                raise TemplateError(
                    str(path), None,
                    "unknown template name; use KIND.FORMAT.j2 with KIND one of "
                    f"{', '.join((*KINDS, 'default'))} and FORMAT one of {', '.join(FORMATS)} "
                    "(or _NAME.j2 for a helper to include)",
                )
            try:
                self.env.get_template(name)
            except jinja2.TemplateSyntaxError as e:
                file = e.filename or str(path)
                raise TemplateError(file, e.lineno, e.message or str(e)) from None

    def _pick(self, kind: str, fmt: str) -> str:
        for name in (f"{kind}.{fmt}.j2", f"default.{fmt}.j2"):
            try:
                self.env.get_template(name)
                return name
            except jinja2.TemplateNotFound:
                continue
            except jinja2.TemplateSyntaxError as e:
                raise TemplateError(e.filename or name, e.lineno, e.message or str(e)) from None
        raise TemplateError(fmt, None, f"no template {kind}.{fmt}.j2 or default.{fmt}.j2")

    def template_name(self, kind: str, fmt: str) -> str:
        return self._names[(kind, fmt)]

    def render(self, fmt: Format | str, message: Message) -> str:
        """The message in one format; raises TemplateError naming file and line."""
        context: dict[str, Any] = {"m": message, "label": LABELS[message.kind]}
        if fmt != "subject":
            context["subject"] = self.render("subject", message)
        template = self.env.get_template(self._names[(message.kind, fmt)])
        try:
            out = template.render(context)
        except TemplateError:
            raise
        except Exception as e:  # noqa: BLE001 - any error in a template names its line
            file, line = _where(e.__traceback__, template.filename or template.name or fmt)
            raise TemplateError(file, line, f"{type(e).__name__}: {e}") from None
        if fmt == "subject":
            out = " ".join(out.split())  # one line, always
        return out.strip() if fmt != "text" else out.strip() + "\n"

    def blocks(self, message: Message) -> list[dict[str, Any]]:
        """Slack Block Kit blocks from the blocks template."""
        text = self.render("blocks", message)
        name = self.env.get_template(self._names[(message.kind, "blocks")]).filename or "blocks"
        try:
            blocks = json.loads(text)
        except json.JSONDecodeError as e:
            raise TemplateError(name, None, f"blocks are not JSON ({e}): {text[:200]}") from None
        if not isinstance(blocks, list) or not all(isinstance(b, dict) for b in blocks):
            raise TemplateError(name, None, "blocks must render to a JSON list of objects")
        return blocks

    def validate(self) -> None:
        """Render every kind and format with sample messages (full and minimal)."""
        for kind in KINDS:
            for sample in (sample_message(kind), sample_message(kind, minimal=True)):
                for fmt in FORMATS:
                    if fmt == "blocks":
                        self.blocks(sample)
                    else:
                        self.render(fmt, sample)


def _where(tb: TracebackType | None, fallback: str) -> tuple[str, int | None]:
    """The template file and line in a traceback Jinja rewrote to point at it."""
    found: tuple[str, int | None] = (fallback, None)
    for frame_file, line in _frames(tb):
        if frame_file.endswith(".j2"):
            found = (frame_file, line)
    return found


def _frames(tb: TracebackType | None) -> Iterator[tuple[str, int]]:
    while tb is not None:
        yield tb.tb_frame.f_code.co_filename, tb.tb_lineno
        tb = tb.tb_next


def sample_message(kind: str, *, minimal: bool = False) -> Message:
    """A realistic message of each kind, for validating templates and for tests."""
    t0 = 1_790_000_000.0
    if kind == "mode":
        return _sample_mode_change(t0, minimal)
    severity = {"resolve": Severity.OK, "test": Severity.OK}.get(kind, Severity.MAJOR)
    if minimal:
        return Message(
            kind=kind, beamline="I04", title="dcm-temp", severity=severity,  # type: ignore[arg-type]
            check_ids=("dcm-temp",),
        )
    consequences = (
        Related("fe-shutter", "Front end shutter", Severity.MAJOR, "Closed", "DEPENDENCY"),
        Related("beam-position", "Beam position", Severity.MINOR, "0.42"),
    )
    return Message(
        kind=kind,  # type: ignore[arg-type]
        beamline="I04",
        title="DCM crystal temperature",
        severity=severity,
        previous_severity=Severity.MINOR if kind != "resolve" else Severity.MAJOR,
        check_ids=("dcm-temp",),
        dedup_key="I04/dcm-temp",
        id="n-1",
        value="141.2",
        text="BL04I-OP-DCM-01:TEMP1 = 141.2 above major limit 140",
        time=t0 + 600,
        since=t0,
        incident_id="inc-42",
        mode="user",
        link="https://beamwatch.example.org/incidents/inc-42",
        actor="ana" if kind == "ack" else None,
        consequences=consequences,
        alarms=consequences if kind == "summary" else (),
        labels={"group": "optics"},
        escalation_level=1 if kind == "escalation" else 0,
        timezone="Europe/London",
        description="Second crystal of the double-crystal monochromator",
        runbook="Guidance: Check the LN2 flow on the DCM cryocooler\n"
                "Display: Optics > DCM (BL04I-OP-DCM-01.bob)",
    )


def _sample_mode_change(t0: float, minimal: bool) -> Message:
    """A mode change as the engine announces it (`engine/mode_notes.py`)."""
    if minimal:
        return Message(kind="mode", beamline="I04", title="mode shutdown",
                       severity=Severity.OK, mode="shutdown")
    return Message(kind="mode", beamline="I04", title="mode user -> maintenance",
                   severity=Severity.OK, dedup_key="mode/1790000600.000/maintenance/x",
                   id="n-2", text="vacuum intervention", time=t0 + 600, mode="maintenance",
                   actor="ana", previous_mode="user", mode_source="override",
                   until=t0 + 600 + 8 * 3600, timezone="Europe/London")
