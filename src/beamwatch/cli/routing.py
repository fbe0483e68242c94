"""`beamwatch route / oncall / notify-test`: ask the real router who would be
told, who is on call, and send a real test message."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Annotated

import typer

from ..config import Config
from ..model import Severity
from ..routing._time import iso, show
from ..routing.calendars import CalendarFeeds
from ..routing.escalation import plan
from ..routing.oncall import OnCallResolver
from ..routing.router import Router, UnknownCheck
from ..timefmt import format_duration
from .common import AtOpt, ConfigOpt, JsonOpt, at, config_or_exit, fail, in_force, note, out


def _load(path: Path) -> tuple[Config, OnCallResolver]:
    cfg = in_force(config_or_exit(path))  # with subscriptions/on-call changed at run time
    # the copy on disk that a running engine keeps is the fallback when a feed fails now
    resolver = OnCallResolver(cfg, feeds=CalendarFeeds(cfg, path.parent).read_now())
    for team, feed in resolver.feeds.feeds.items():
        if feed.error:
            why = resolver.stale_note(team) or feed.error
            note(f"warning: team {team}: {why}")
    return cfg, resolver


def route_command(
    config: ConfigOpt,
    check: Annotated[str | None, typer.Option("--check", help="The check id.")] = None,
    severity: Annotated[str, typer.Option(
        "--severity", help="minor, major or invalid (ok shows that nothing matches).")] = "major",
    mode: Annotated[str | None, typer.Option(
        "--mode", help="The beamline mode (default: the config's default mode).")] = None,
    at_text: AtOpt = "now",
    resolved: Annotated[bool, typer.Option(
        "--resolved", help="Route the 'resolved' notice instead of the alarm.")] = False,
    mode_change: Annotated[str | None, typer.Option(
        "--mode-change", help="Instead of an alarm: a beamline mode change INTO this mode "
                              "(the routes with match: {kind: mode}).")] = None,
    from_mode: Annotated[str | None, typer.Option(
        "--from", help="With --mode-change: the mode changed from (default: the "
                       "config's default mode).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Who would be told about CHECK at SEVERITY (or a mode change), and which route decided."""
    cfg, oncall = _load(config)
    if mode_change is not None:
        _route_mode_change(cfg, oncall, mode_change, from_mode, at_text, as_json)
        return
    if check is None:
        fail("give --check ID (an alarm) or --mode-change MODE (a beamline mode change)")
    try:
        sev = Severity.parse(severity)
    except KeyError:
        fail(f"--severity: '{severity}' is not one of minor, major, invalid, ok")
    if mode is not None and mode not in cfg.modes.names:
        fail(f"--mode: unknown mode '{mode}' (modes: {', '.join(cfg.modes.names)})")
    t = at("--at", at_text, cfg, time.time())
    router = Router(cfg, oncall)
    try:
        result = router.route(check, sev, t, mode, resolved=resolved)
    except UnknownCheck as e:
        fail(str(e))
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


def _route_mode_change(cfg: Config, oncall: OnCallResolver, new: str, old: str | None,
                       at_text: str, as_json: bool) -> None:
    old = cfg.modes.default if old is None else old
    for option, mode in (("--mode-change", new), ("--from", old)):
        if mode not in cfg.modes.names:
            fail(f"{option}: unknown mode '{mode}' (modes: {', '.join(cfg.modes.names)})")
    t = at("--at", at_text, cfg, time.time())
    result = Router(cfg, oncall).route_mode(old, new, t)
    if as_json:
        typer.echo(json.dumps(result.to_json(), indent=2))
        return
    for line in result.explain():
        typer.echo(line)


def oncall_command(
    config: ConfigOpt,
    at_text: AtOpt = "now",
    team: Annotated[str | None, typer.Option("--team", help="Only this team.")] = None,
    upcoming: Annotated[int, typer.Option(
        "--next", help="Show this many upcoming handovers per team.")] = 3,
    as_json: JsonOpt = False,
) -> None:
    """Who is on call for each team at a time, why, until when, and who is next."""
    cfg, oncall = _load(config)
    t = at("--at", at_text, cfg, time.time())
    if team is not None and team not in cfg.teams:
        fail(f"--team: unknown team '{team}' (teams: {', '.join(cfg.teams) or 'none'})")
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


def notify_test_command(
    config: ConfigOpt,
    to: Annotated[str, typer.Option("--to", help="channel:NAME, person:NAME or "
                                                   "person:NAME/KIND.")],
    as_json: JsonOpt = False,
) -> None:
    """Send a real test message and say, per destination, whether it arrived."""
    from ..notify.registry import NotifyConfigError
    from ..notify.registry import notify_test as send_test

    cfg = config_or_exit(config)
    try:
        results = asyncio.run(send_test(cfg, to))
    except KeyError as e:
        fail(f"--to: {e.args[0] if e.args else to}")
    except NotifyConfigError as e:
        fail(f"--to {to}: {e}")
    if as_json:
        print(json.dumps({name: {"ok": d.ok, "retry": d.retry, "detail": d.detail,
                                 "error": d.error.value if d.error else None}
                          for name, d in results.items()}, indent=2))
    else:
        for name, d in results.items():
            verdict = "[green]sent[/]" if d.ok else "[red]FAILED[/]"
            out.print(f"{name}: {verdict} {d.detail}")
    raise typer.Exit(0 if all(d.ok for d in results.values()) else 1)


def register(app: typer.Typer) -> None:
    """Add `route`, `oncall` and `notify-test` to `app`."""
    app.command("route")(route_command)
    app.command("oncall")(oncall_command)
    app.command("notify-test")(notify_test_command)
