"""`beamwatch facility`: every beamline sharing one PostgreSQL, one row each — worst
state, alarms, open incidents, who is on call, whether its monitor is alive;
`beamwatch facility serve`: the same as a web page and JSON."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from .. import timefmt
from ..config import ConfigError
from .common import JsonOpt, config_error_exit, fail, first_line, note, out, safe_url
from .state import SEVERITY_STYLE

FacilityOpt = Annotated[Path, typer.Option(
    "--config", "-c", help="The facility YAML file (facility:, storage.url, beamlines:).",
    envvar="BEAMWATCH_FACILITY")]
MaybeFacilityOpt = Annotated[Path | None, typer.Option(
    "--config", "-c", help="The facility YAML file (facility:, storage.url, beamlines:).",
    envvar="BEAMWATCH_FACILITY")]

facility_app = typer.Typer(
    help="Every beamline of a facility sharing one PostgreSQL: worst state, open incidents, "
         "who is on call, whether its monitor is alive.",
    add_completion=False, pretty_exceptions_enable=False)


def _load(config: Path):
    from ..facility.config import load_facility

    try:
        return load_facility(config)
    except ConfigError as e:
        config_error_exit(e)


@facility_app.callback(invoke_without_command=True)
def facility_command(ctx: typer.Context, config: MaybeFacilityOpt = None,
                     as_json: JsonOpt = False) -> None:
    """Every beamline of the facility: worst state, open incidents, on call, monitor.
    `beamwatch facility serve -c FILE`: the same as a web page."""
    if ctx.invoked_subcommand is not None:
        return
    if config is None:
        fail("give the facility file: beamwatch facility -c facility.yaml")
    from ..facility.view import facility_engine, read_facility

    cfg = _load(config)
    engine = facility_engine(cfg)
    now = time.time()
    try:
        rows = read_facility(cfg, engine, now)
    except Exception as e:  # the database is away or refuses us
        fail(f"cannot read the facility's database {safe_url(cfg.storage.url)}: "
             f"{first_line(e)}", 1)
    finally:
        engine.dispose()
    if as_json:
        print(json.dumps({"facility": cfg.facility, "now": now,
                          "beamlines": [r.to_json() for r in rows]}, indent=2))
        return
    out.print(_table(cfg.facility, rows, now))


def _table(facility: str, rows, now: float) -> Table:
    table = Table(title=f"{facility} — {len(rows)} beamlines")
    for col in ("beamline", "worst", "alarms", "open incidents", "on call", "monitor", "as of"):
        table.add_column(col)
    for r in rows:
        name = escape(r.beamline or r.schema)
        if r.problem:
            table.add_row(name, "—", "—", "—", "—", f"[dim]{escape(r.problem)}[/]", "—")
            continue
        worst = f"[{SEVERITY_STYLE[r.worst]}]{r.worst}[/]"
        alarms = f"{r.alarms}" + (f" ({r.unacked} unacked)" if r.unacked else "")
        incidents = "\n".join(f"{escape(i['root'])} ({i['severity']}, {i['checks']} checks, "
                              f"{timefmt.ago(i['opened'], now)})" for i in r.incidents) or "—"
        oncall = "\n".join(f"{escape(o['team'])}: {escape(o['name'] or 'nobody')}"
                           + (" [dim](stale)[/]" if o["stale"] else "") for o in r.oncall) or "—"
        table.add_row(name, worst, alarms, incidents, oncall, _monitor(r, now),
                      timefmt.ago(r.as_of, now) + " ago" if r.as_of else "—")
    return table


def _monitor(r, now: float) -> str:
    if not r.instances:
        return "[bold red]never ran[/]"
    parts = []
    for i in r.instances:
        role = f" {i.role}" if i.role else ""
        state = "[green]alive[/]" if i.alive else f"[bold red]down[/] ({timefmt.ago(i.beat, now)})"
        parts.append(f"{escape(i.host or i.name)}{escape(role)}: {state}")
    if not r.monitor_alive:
        parts.insert(0, "[bold red]MONITOR DOWN[/]")
    return "\n".join(parts)


@facility_app.command("serve")
def serve_command(config: FacilityOpt) -> None:
    """Serve the facility view: a page at / (reloads every 10 s) and JSON at
    /api/facility, on web.listen of the facility file. Read only."""
    from ..facility.view import facility_engine, read_facility
    from ..web.facility import create_facility_app
    from ..web.server import WebError, WebServer, bind

    cfg = _load(config)
    try:
        sock = bind(*cfg.web.address)
    except WebError as e:
        fail(str(e), 1)
    engine = facility_engine(cfg)
    app = create_facility_app(cfg.facility, lambda: read_facility(cfg, engine))
    server = WebServer(app, sock)
    note(f"the {cfg.facility} facility view on {server.url}; Ctrl-C stops")
    try:
        asyncio.run(_serve(server))
    finally:
        engine.dispose()


async def _serve(server) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await server.serve(stop)


def register(app: typer.Typer) -> None:
    app.add_typer(facility_app, name="facility")
