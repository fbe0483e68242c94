"""`beamwatch facility`: every beamline sharing one PostgreSQL, one row each — worst
state, alarms, open incidents, who is on call, whether its monitor is alive."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from .. import timefmt
from ..config import ConfigError
from .common import JsonOpt, config_error_exit, fail, first_line, out, safe_url
from .state import SEVERITY_STYLE

FacilityOpt = Annotated[Path, typer.Option(
    "--config", "-c", help="The facility YAML file (facility:, storage.url, beamlines:).",
    envvar="BEAMWATCH_FACILITY")]


def facility_command(config: FacilityOpt, as_json: JsonOpt = False) -> None:
    """Every beamline of the facility: worst state, open incidents, on call, monitor."""
    from ..facility.config import load_facility
    from ..facility.view import facility_engine, read_facility

    try:
        cfg = load_facility(config)
    except ConfigError as e:
        config_error_exit(e)
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


def register(app: typer.Typer) -> None:
    app.command("facility")(facility_command)
