"""`beamwatch route` and `beamwatch oncall`: ask the real router, print its answer.

The lead's app mounts them with `register(app)`; `route_command` and
`oncall_command` are the plain typer command functions.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, NoReturn

import typer

from ..config import Config, ConfigError, load_config
from ..config.types import format_duration
from ..model import Severity
from ._time import iso, parse_at, show
from .calendars import CalendarFeeds
from .escalation import plan
from .oncall import OnCallResolver
from .router import Router, UnknownCheck

ConfigOpt = Annotated[Path, typer.Option("--config", "-c", help="The beamwatch YAML config file.",
                                         envvar="BEAMWATCH_CONFIG")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
AtOpt = Annotated[str, typer.Option(
    "--at", help="When: 'now', 'now+2h', or ISO 8601 (naive = the config timezone).")]


def _fail(message: str, code: int = 2) -> NoReturn:
    typer.echo(f"beamwatch: {message}", err=True)
    raise typer.Exit(code)


def _load(path: Path) -> tuple[Config, OnCallResolver]:
    try:
        cfg = load_config(path)
    except ConfigError as e:
        for issue in e.issues:
            typer.echo(str(issue), err=True)
        raise typer.Exit(2) from None
    # the copy on disk that a running engine keeps is the fallback when a feed fails now
    resolver = OnCallResolver(cfg, feeds=CalendarFeeds(cfg, path.parent).read_now())
    for team, feed in resolver.feeds.feeds.items():
        if feed.error:
            why = resolver.stale_note(team) or feed.error
            typer.echo(f"beamwatch: warning: team {team}: {why}", err=True)
    return cfg, resolver


def _at(text: str, cfg: Config) -> float:
    try:
        return parse_at(text, cfg.timezone, time.time())
    except ValueError as e:
        _fail(f"--at: {e}")


def route_command(
    config: ConfigOpt,
    check: Annotated[str, typer.Option("--check", help="The check id.")],
    severity: Annotated[str, typer.Option(
        "--severity", help="minor, major or invalid (ok shows that nothing matches).")] = "major",
    mode: Annotated[str | None, typer.Option(
        "--mode", help="The beamline mode (default: the config's default mode).")] = None,
    at: AtOpt = "now",
    resolved: Annotated[bool, typer.Option(
        "--resolved", help="Route the 'resolved' notice instead of the alarm.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Who would be told about CHECK at SEVERITY, on what, and which route decided."""
    cfg, oncall = _load(config)
    try:
        sev = Severity.parse(severity)
    except KeyError:
        _fail(f"--severity: '{severity}' is not one of minor, major, invalid, ok")
    if mode is not None and mode not in cfg.modes.names:
        _fail(f"--mode: unknown mode '{mode}' (modes: {', '.join(cfg.modes.names)})")
    t = _at(at, cfg)
    router = Router(cfg, oncall)
    try:
        result = router.route(check, sev, t, mode, resolved=resolved)
    except UnknownCheck as e:
        _fail(str(e))
    steps = [] if resolved else plan(router, result, t)
    if as_json:
        data = result.to_json()
        data["escalations"] = [
            {"route": s.level.route, "level": s.level.level,
             "after": format_duration(s.level.after), "at": iso(s.at, cfg.timezone),
             "to": list(s.level.to), "recipients": [r.to_json() for r in s.result.recipients],
             "held": [h.to_json() for h in s.result.held], "notes": list(s.result.notes)}
            for s in steps]
        typer.echo(json.dumps(data, indent=2))
        return
    for line in result.explain():
        typer.echo(line)
    repeats = sorted({(r.repeat, r.key) for r in result.recipients if r.repeat},
                     key=lambda x: (x[0], x[1]))
    if repeats:
        typer.echo("repeats while unacknowledged: " + ", ".join(
            f"{key} every {format_duration(rep)}" for rep, key in repeats))
    for s in steps:
        told = ", ".join(f"{r.key} ({', '.join(r.destinations)})" for r in s.result.recipients)
        typer.echo(f"escalation: after {format_duration(s.level.after)} "
                   f"({show(s.at, cfg.timezone)}), routes[{s.level.route}] level "
                   f"{s.level.level} {', '.join(s.level.to)} -> {told or 'nobody'}")
        for h in s.result.held:
            typer.echo(f"  not told then: {h.name}: {h.why}")


def oncall_command(
    config: ConfigOpt,
    at: AtOpt = "now",
    team: Annotated[str | None, typer.Option("--team", help="Only this team.")] = None,
    upcoming: Annotated[int, typer.Option(
        "--next", help="Show this many upcoming handovers per team.")] = 3,
    as_json: JsonOpt = False,
) -> None:
    """Who is on call for each team at a time, why, until when, and who is next."""
    cfg, oncall = _load(config)
    t = _at(at, cfg)
    if team is not None and team not in cfg.teams:
        _fail(f"--team: unknown team '{team}' (teams: {', '.join(cfg.teams) or 'none'})")
    answers = [oncall.who(team, t)] if team else oncall.everyone(t)
    if as_json:
        typer.echo(json.dumps({
            "at": iso(t, cfg.timezone), "timezone": cfg.timezone,
            "teams": [{**a.to_json(cfg.timezone),
                       "next": [n.to_json(cfg.timezone)
                                for n in oncall.upcoming(a.team, t, upcoming)]}
                      for a in answers]}, indent=2))
        return
    typer.echo(f"on call at {show(t, cfg.timezone)} ({cfg.timezone})")
    if not answers:
        typer.echo("no team has a rota, an ical feed or overrides")
    for a in answers:
        who = a.person or "NOBODY"
        span = f"since {show(a.since, cfg.timezone)}, " if a.since else ""
        if a.until is not None:
            until = f"until {show(a.until, cfg.timezone)}"
        else:
            until = f"no change within {format_duration(oncall.horizon)}"
        typer.echo(f"{a.team}: {who}" + (f" ({a.source}, {span}{until})" if a.person else ""))
        typer.echo(f"  why: {a.reason}")
        for n in oncall.upcoming(a.team, t, upcoming):
            typer.echo(f"  then {n.person or 'NOBODY'} from {show(n.at, cfg.timezone)}"
                       + (f" ({n.source})" if n.source else ""))


def register(app: typer.Typer) -> None:
    """Add `route` and `oncall` to the beamwatch app."""
    app.command("route")(route_command)
    app.command("oncall")(oncall_command)
