"""`beamwatch silence / silences / unsilence / mode`: thin typer commands over
the service layer `api/noise.py`."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from .. import timefmt
from ..api import noise
from ..engine.modes import Override
from ..engine.silences import Silence, until_text
from .common import (
    AsOpt,
    ConfigOpt,
    JsonOpt,
    MaybeConfigOpt,
    config_or_exit,
    fail,
    note,
    open_store,
    out,
    service_errors,
    who,
)

ForOpt = Annotated[str | None, typer.Option(
    "--for", help="How long: 30m, 2h, 1h30m, 3d.", show_default=False)]
UntilOpt = Annotated[str | None, typer.Option(
    "--until", help="Until when: 14:00 (the next 14:00), tomorrow 08:00, now+2h or "
                    "2026-11-27T14:00; in the config's timezone.", show_default=False)]
ReasonOpt = Annotated[str | None, typer.Option(
    "--reason", "-r", help="Why (required): shown to everyone and in the log.",
    show_default=False)]


def _say(text: str) -> None:
    typer.echo(text)


def _load(config: Path):
    cfg = config_or_exit(config)
    return cfg, open_store(cfg)


def _until(t: float, now: float, tz: str) -> str:
    """'14:00 GMT (in 1h20m)' today, 'Sat 28 Nov 14:00 GMT (in 1d6h)' another day,
    '… (3h02m ago)' in the past; in the config's timezone."""
    when = until_text(t, now, tz)
    if t > now:
        return f"{when} (in {timefmt.ago(now, t)})"
    return f"{when} ({timefmt.ago(t, now)} ago)"


def _covers(covers: tuple[str, ...], at_most: int = 4) -> str:
    if not covers:
        return "nothing (no configured check matches)"
    shown = ", ".join(covers[:at_most])
    return shown + (f" +{len(covers) - at_most} more" if len(covers) > at_most else "")


def _silence_line(s: Silence, now: float, tz: str) -> str:
    return (f"silence {s.id}: {', '.join(map(str, s.matchers))} until "
            f"{_until(s.end, now, tz)}, by {s.author}: {s.reason}")


# --- silences ---------------------------------------------------------------------------------


def silence_command(
    matchers: Annotated[list[str], typer.Argument(
        help="What to silence: check ids (any of them), and/or matchers NAME=VALUE, "
             "NAME!=VALUE, NAME=~REGEX, NAME!~REGEX on the labels check, group, severity, "
             "mode or a check's own labels (all must match).", show_default=False)],
    config: ConfigOpt,
    for_: ForOpt = None,
    until: UntilOpt = None,
    reason: ReasonOpt = None,
    actor: AsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Silence alarms for a while: they are still shown and logged, but nobody is notified.

    Examples: `beamwatch silence -c i04.yaml fe-vacuum --for 2h --reason "replacing gauge"`,
    `beamwatch silence -c i04.yaml group=vacuum severity=minor --until 18:00 -r "bake-out"`.
    """
    cfg, store = _load(config)
    now = time.time()
    with service_errors():
        s = noise.silence(cfg, store, matchers, duration=for_, until=until, author=who(actor),
                          reason=reason, now=now)
        v = noise.view(cfg, s, now)
    if as_json:
        print(json.dumps(v.to_json(cfg.timezone), indent=2))
        return
    _say(_silence_line(s, now, cfg.timezone))
    _say(f"covers {len(v.covers)} check{'s' if len(v.covers) != 1 else ''}: "
         f"{_covers(v.covers, 12)}")


def silences_command(
    config: ConfigOpt,
    show_all: Annotated[bool, typer.Option("--all", help="Also silences that have ended.")]
    = False,
    as_json: JsonOpt = False,
) -> None:
    """The silences in force (and starting later): who, until when, why, what they cover."""
    cfg, store = _load(config)
    now = time.time()
    tz = cfg.timezone
    with service_errors():
        rows = noise.silences(cfg, store, now, include_expired=show_all)
    if as_json:
        print(json.dumps([r.to_json(tz) for r in rows], indent=2))
        return
    if not rows:
        _say("no silences" if show_all else "no silences in force")
        return
    active = sum(r.state == "active" for r in rows)
    table = Table(title=f"{cfg.beamline} silences — {active} in force", title_justify="left")
    table.add_column("id", no_wrap=True)
    table.add_column("matchers", no_wrap=True)
    for col in ("who", "until", "reason", "covers"):
        table.add_column(col, overflow="fold")
    if show_all:
        table.add_column("state")
    for r in rows:
        s = r.silence
        author = s.author + (f" (ended by {s.expired_by})" if s.expired_by else "")
        until = _until(s.end, now, tz)
        if r.state == "pending":
            until = f"from {until_text(s.start, now, tz)}, {until}"
        cells = [s.id, "\n".join(map(str, s.matchers)), author, until, s.reason, _covers(r.covers)]
        if show_all:
            cells.append(r.state)
        table.add_row(*cells)
    out.print(table)


def unsilence_command(
    silence_id: Annotated[str, typer.Argument(
        metavar="ID", help="The silence to end (its id, from `beamwatch silences`).",
        show_default=False)],
    config: ConfigOpt,
    actor: AsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """End a silence now: the alarms it muted notify again if they are still active."""
    cfg, store = _load(config)
    now = time.time()
    with service_errors():
        s = noise.unsilence(store, silence_id, who(actor), now, tz=cfg.timezone)
        v = noise.view(cfg, s, now)
    if as_json:
        print(json.dumps(v.to_json(cfg.timezone), indent=2))
        return
    _say(f"silence {s.id} ended by {s.expired_by} ({', '.join(map(str, s.matchers))}: "
         f"{s.reason})")


# --- the beamline mode ------------------------------------------------------------------------


def _override_text(ov: Override, now: float, tz: str) -> str:
    return (f"{ov.mode} until {_until(ov.until, now, tz)}, set by {ov.author}: "
            f"{ov.reason}")


def _mode_config(ctx: typer.Context, config: Path | None) -> Path:
    """-c given to the subcommand, or to `mode` itself (`beamwatch mode -c F set …`)."""
    config = config or (ctx.obj or {}).get("noise_config")
    if config is None:
        fail("missing option --config / -c: the beamwatch YAML config file")
    return config


def _show_mode(config: Path, as_json: bool) -> None:
    cfg, store = _load(config)
    now = time.time()
    tz = cfg.timezone
    with service_errors():
        info = noise.mode_status(cfg, store, now)
        recent = noise.mode_changes(store, limit=5)
    if as_json:
        data = info.to_json(tz)
        data["recent_changes"] = [
            {"time": c.time, "time_text": noise.iso(c.time, tz), "old": c.old, "new": c.new,
             "source": str(c.source), "author": c.author, "reason": c.reason} for c in recent]
        print(json.dumps(data, indent=2))
        return
    if info.override is not None:
        _say(f"mode: {info.mode} — override: {_override_text(info.override, now, tz)}")
    elif info.since is None:
        _say(f"mode: {info.mode} — the configured default (no mode change logged yet)")
    else:
        _say(f"mode: {info.mode} — from {info.source}, since "
             f"{until_text(info.since, now, tz)} ({timefmt.ago(info.since, now)} ago)")
    _say(f"modes: {', '.join(info.modes)} (default {info.default})")
    if recent:
        _say("recent changes:")
        for c in recent:
            _say(f"  {timefmt.show(c.time, tz, seconds=False)}  {c}")
    if not info.engine_running:
        note("note: `beamwatch run` is not running; this is the mode it last logged")


def _mode_app() -> typer.Typer:
    mode_app = typer.Typer(
        help="Show the beamline mode, or override it for a while (set / clear).",
        invoke_without_command=True, no_args_is_help=False, add_completion=False,
        pretty_exceptions_enable=False,
    )

    @mode_app.callback(invoke_without_command=True)
    def mode_callback(ctx: typer.Context, config: MaybeConfigOpt = None,
                      as_json: JsonOpt = False) -> None:
        """Show the beamline mode: which, from where (mode PV, override, schedule,
        default), since when, and any override with its author, reason and end.
        `mode set` and `mode clear` override it."""
        if ctx.invoked_subcommand is not None:
            ctx.ensure_object(dict)["noise_config"] = config
            return
        _show_mode(_mode_config(ctx, config), as_json)

    @mode_app.command("set")
    def mode_set(
        ctx: typer.Context,
        name: Annotated[str, typer.Argument(metavar="NAME", show_default=False,
                                            help="A mode of the config (modes.names).")],
        config: MaybeConfigOpt = None,
        for_: ForOpt = None,
        until: UntilOpt = None,
        reason: ReasonOpt = None,
        actor: AsOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Force the beamline mode until a time, over the mode PV and the schedule.

        An end is required (--for or --until), so that a forgotten override cannot
        hold the beamline in 'shutdown' for good. Replaces any override in force.
        Example: `beamwatch mode set maintenance -c i04.yaml --for 8h -r "vacuum work"`.
        """
        cfg, store = _load(_mode_config(ctx, config))
        now = time.time()
        with service_errors():
            ov = noise.set_mode(cfg, store, name, for_=for_, until=until, author=who(actor),
                                reason=reason, now=now)
            info = noise.mode_status(cfg, store, now)
        if as_json:
            print(json.dumps(info.to_json(cfg.timezone), indent=2))
        else:
            _say(f"mode {_override_text(ov, now, cfg.timezone)}")
        if not info.engine_running:
            note("note: `beamwatch run` is not running; it applies the override when it starts")

    @mode_app.command("clear")
    def mode_clear(
        ctx: typer.Context,
        config: MaybeConfigOpt = None,
        actor: AsOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """End the mode override now: the mode PV (or schedule, or default) decides again."""
        cfg, store = _load(_mode_config(ctx, config))
        now = time.time()
        with service_errors():
            ov = noise.clear_mode(store, who(actor), now)
        if as_json:
            print(json.dumps({"cleared": ov is not None,
                              "override": None if ov is None else {
                                  "mode": ov.mode, "author": ov.author, "reason": ov.reason,
                                  "start": ov.start, "until": ov.until}}, indent=2))
        elif ov is None:
            _say("no mode override in force: nothing to clear")
        else:
            _say(f"mode override {ov.mode} (set by {ov.author}: {ov.reason}) cleared; "
                 "the mode PV, schedule or default decides again")

    return mode_app


def register(app: typer.Typer) -> None:
    """Add silence, silences, unsilence and the `mode` group to `app`."""
    app.command("silence")(silence_command)
    app.command("silences")(silences_command)
    app.command("unsilence")(unsilence_command)
    app.add_typer(_mode_app(), name="mode")
