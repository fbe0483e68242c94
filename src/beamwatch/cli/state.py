"""`beamwatch status / history / ack`: the state of the checks and the beamline
log, read from the store (so they work whether or not `run` is running)."""

from __future__ import annotations

import json
import time
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from .. import timefmt
from ..model import value_text
from .common import (
    AsOpt,
    ConfigOpt,
    JsonOpt,
    SinceOpt,
    config_or_exit,
    err,
    fail,
    open_store,
    out,
    since,
    who,
)

SEVERITY_STYLE = {"OK": "green", "MINOR": "yellow", "MAJOR": "bold red", "INVALID": "magenta"}


def status_command(config: ConfigOpt, as_json: JsonOpt = False,
                   alarms_only: Annotated[bool, typer.Option(
                       "--alarms", help="Only checks in alarm.")] = False) -> None:
    """Every check, worst first: severity, value, since when, why."""
    from ..api import service

    cfg = config_or_exit(config)
    store = open_store(cfg)
    rows = service.status(cfg, store)
    alive = service.engine_alive(store)
    instances = service.instances(store)
    if alarms_only:
        rows = [r for r in rows if r.severity != "OK"]
    if as_json:
        print(json.dumps({"beamline": cfg.beamline, "engine_running": alive,
                          "instances": instances,
                          "checks": [r.to_json() for r in rows]}, indent=2))
        return
    now = time.time()
    table = Table(title=f"{cfg.beamline} — {sum(r.severity != 'OK' for r in rows)} in alarm"
                        f"{'' if alive else ' (beamwatch run is NOT running)'}")
    for col in ("check", "severity", "value", "since", "why"):
        table.add_column(col)
    for r in rows:
        sev = r.severity + (" (acked)" if r.acked else "")
        if r.severity != r.current:
            sev += f" now {r.current}"
        why = r.message or ""
        if r.muted:
            why += f" [dim](muted {r.muted}: {r.mute_detail})[/]"
        if r.severity != "OK":  # what to do, where it is needed
            for extra in (r.description, r.runbook.strip()):
                if extra:
                    why += f"\n[dim]{escape(extra)}[/]"
        table.add_row(r.id, f"[{SEVERITY_STYLE[r.severity]}]{sev}[/]", r.value_text,
                      timefmt.ago(r.since, now) if r.since else "—", why)
    out.print(table)
    if instances:
        out.print(f"instances: {service.instances_text(instances, now)}", markup=False,
                  soft_wrap=True)


def history_command(
    config: ConfigOpt,
    since_text: SinceOpt = "24h",
    check_id: Annotated[str | None, typer.Option("--check", help="Only this check.")] = None,
    limit: Annotated[int | None, typer.Option(help="At most this many rows.")] = None,
    values: Annotated[bool, typer.Option(
        "--values", help="The check's values instead (needs --check): per-minute "
        "min/max/last from the store and, before its first minute, from the archiver "
        "(sources: kind archiver).")] = False,
    as_json: JsonOpt = False,
) -> None:
    """The beamline log: every transition and every change people made (acks, silences,
    mode overrides, subscriptions, on-call; from the CLI, Slack or the web), oldest first.
    With --values, a check's past values instead."""
    from ..api import service

    cfg = config_or_exit(config)
    if check_id is not None and check_id not in cfg.check_ids:
        fail(f"unknown check '{check_id}'")
    start = since("--since", since_text, cfg)
    if values:
        if check_id is None:
            fail("--values needs --check ID (whose values)")
        _print_values(cfg, check_id, start, limit, as_json)
        return
    rows = service.history(open_store(cfg), start, check_id, limit)
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    table = Table(title=f"{cfg.beamline} log since {timefmt.show(start, cfg.timezone)} "
                        f"({cfg.timezone})")
    for col in ("time", "check", "change", "value", "why"):
        table.add_column(col)
    for r in rows:
        if r["kind"] == "audit":
            what = f"{r['action']} {r['target']}".strip()
            outcome = "" if r["outcome"] == "done" else f" [{r['outcome']}]"
            table.add_row(timefmt.show(r["time"], cfg.timezone), "",
                          f"[cyan]{escape(what)}[/]{outcome}",
                          f"by {escape(r['actor'])} ({r['via']})", escape(r["detail"]))
            continue
        change = f"{r['old']} → [{SEVERITY_STYLE[r['new']]}]{r['new']}[/]"
        if r["reason"] == "ack":
            change += f" acked by {r['actor']}"
        elif r["reason"] in ("forecast", "forecast came true"):
            change += f" ({r['reason']})"
        why = r["message"] + (f" [muted: {r['muted']} {r['mute_detail'] or ''}]"
                              if r["muted"] else "")
        table.add_row(timefmt.show(r["time"], cfg.timezone), r["check"], change,
                      value_text(r["value"]), why)
    out.print(table)
    if not rows:
        out.print("no transitions in that period")


def _print_values(cfg, check_id: str, start: float, limit: int | None,
                  as_json: bool) -> None:

    from ..api import past

    got = past.values(cfg, open_store(cfg), check_id, start, time.time())
    rows = got.rows[-limit:] if limit is not None else got.rows
    if as_json:
        print(json.dumps({**got.to_json(), "minutes": rows}, indent=2))
        return
    table = Table(title=f"{check_id} values since {timefmt.show(start, cfg.timezone)} "
                        f"({cfg.timezone})")
    for col in ("time", "min", "max", "last", "samples", "from"):
        table.add_column(col)
    for r in rows:
        gap = "" if r["connected"] is not False else " [red](disconnected)[/]"
        table.add_row(timefmt.show(r["time"], cfg.timezone), value_text(r["vmin"]),
                      value_text(r["vmax"]), escape(value_text(r["vlast"])) + gap,
                      str(r["count"] if r["count"] is not None else ""),
                      "archiver" if r["archived"] else "store")
    out.print(table)
    if not rows:
        out.print("no values in that period")
    if got.archive:
        out.print(("" if got.archive_ok else "[yellow]") + escape(got.archive)
                  + ("" if got.archive_ok else "[/]"))


def ack_command(
    config: ConfigOpt,
    check_id: Annotated[str, typer.Argument(help="The check to acknowledge.")],
    actor: AsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Acknowledge a check's alarm (stops repeats; a latched alarm clears if OK now).

    The running engine applies it. With no engine running the ack is queued (exit 0)
    and applied when `beamwatch run` starts, if within 24 h."""
    from ..api import service

    cfg = config_or_exit(config)
    result = service.acknowledge(cfg, open_store(cfg), check_id, who(actor))
    if as_json:
        print(json.dumps({"ok": result.ok, "message": result.message, "queued": result.queued,
                          "engine_running": result.engine_running}))
    else:
        (out if result.ok else err).print(result.message, markup=False, soft_wrap=True)
    raise typer.Exit(0 if result.ok else 2)


def register(app: typer.Typer) -> None:
    """Add status, history and ack to `app`."""
    app.command("status")(status_command)
    app.command("history")(history_command)
    app.command("ack")(ack_command)
