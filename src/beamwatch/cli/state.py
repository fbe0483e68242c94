"""The `beamwatch` command. Thin: parse, call the service layer, print.

Every command has --help; those a script would read have --json. Errors are
one clear line on stderr and an exit code (2 = bad input), never a traceback.
"""

from __future__ import annotations

import asyncio
import getpass
import json
import sys
import time
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.table import Table

from . import logs, timefmt
from .config import Config, ConfigError, load_config
from .model import value_text

app = typer.Typer(
    help="beamwatch: watches a beamline and tells the right person, once.",
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
)
out = Console(highlight=False)
err = Console(stderr=True, highlight=False)

ConfigOpt = Annotated[Path, typer.Option("--config", "-c", help="The beamwatch YAML config file.",
                                         envvar="BEAMWATCH_CONFIG")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
SEVERITY_STYLE = {"OK": "green", "MINOR": "yellow", "MAJOR": "bold red", "INVALID": "magenta"}


def fail(message: str, code: int = 2) -> NoReturn:
    err.print(f"beamwatch: {message}", markup=False, soft_wrap=True)
    raise typer.Exit(code)


def config_or_exit(path: Path) -> Config:
    try:
        return load_config(path)
    except ConfigError as e:
        for issue in e.issues:
            err.print(str(issue), markup=False, soft_wrap=True)
        raise typer.Exit(2) from None


def open_store(config: Config):
    from .store import Store

    try:
        return Store(config.storage.url)
    except Exception as e:  # a database that is not there, a file we cannot write
        fail(f"cannot open the store {_safe_url(config.storage.url)}: {_first_line(e)}", 1)


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<storage url>"


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]


@app.callback()
def main_options(
    verbose: Annotated[int, typer.Option("--verbose", "-v", count=True,
                                         help="More log output (-v info, -vv debug).")] = 0,
    log_json: Annotated[bool, typer.Option("--log-json", help="Log as JSON lines.")] = False,
) -> None:
    logs.setup(verbose, log_json)


@app.command()
def check(config: ConfigOpt) -> None:
    """Validate a config file; print every problem as FILE:LINE:COL: key: message."""
    cfg = config_or_exit(config)
    out.print(f"{config}: OK — beamline {cfg.beamline}, {len(cfg.checks)} checks, "
              f"{len(cfg.routes)} routes", markup=False)


@app.command()
def run(config: ConfigOpt) -> None:
    """Watch the beamline (runs until SIGTERM or Ctrl-C; SIGHUP reloads the config)."""
    from .app import App

    config_or_exit(config)
    try:
        application = App(config)
    except ConfigError as e:
        for issue in e.issues:
            err.print(str(issue), markup=False)
        raise typer.Exit(2) from None
    except Exception as e:
        fail(f"cannot start: {_first_line(e)}", 1)
    err.print(f"beamwatch: watching {len(application.config.checks)} checks of "
              f"{application.config.beamline}; log in {_safe_url(application.config.storage.url)}"
              "; Ctrl-C stops", markup=False)
    try:
        asyncio.run(application.run())
    except KeyboardInterrupt:
        pass


@app.command()
def status(config: ConfigOpt, as_json: JsonOpt = False,
           alarms_only: Annotated[bool, typer.Option("--alarms", help="Only checks in alarm.")]
           = False) -> None:
    """Every check, worst first: severity, value, since when, why."""
    from .api import service

    cfg = config_or_exit(config)
    store = open_store(cfg)
    rows = service.status(cfg, store)
    alive = service.engine_alive(store)
    if alarms_only:
        rows = [r for r in rows if r.severity != "OK"]
    if as_json:
        print(json.dumps({"beamline": cfg.beamline, "engine_running": alive,
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
        table.add_row(r.id, f"[{SEVERITY_STYLE[r.severity]}]{sev}[/]", r.value_text,
                      timefmt.ago(r.since, now) if r.since else "—", why)
    out.print(table)


@app.command()
def history(
    config: ConfigOpt,
    since: Annotated[str, typer.Option(help="How far back: 24h, 7d, or a time.")] = "24h",
    check_id: Annotated[str | None, typer.Option("--check", help="Only this check.")] = None,
    limit: Annotated[int | None, typer.Option(help="At most this many rows.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """The beamline log: every transition, oldest first."""
    from .api import service

    cfg = config_or_exit(config)
    if check_id is not None and check_id not in cfg.check_ids:
        fail(f"unknown check '{check_id}'")
    try:
        start = timefmt.parse_when(since, cfg.timezone)
    except ValueError as e:
        fail(f"--since: {e}")
    rows = service.history(open_store(cfg), start, check_id, limit)
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    table = Table(title=f"{cfg.beamline} log since {timefmt.show(start, cfg.timezone)} "
                        f"({cfg.timezone})")
    for col in ("time", "check", "change", "value", "why"):
        table.add_column(col)
    for r in rows:
        change = f"{r['old']} → [{SEVERITY_STYLE[r['new']]}]{r['new']}[/]"
        if r["reason"] == "ack":
            change += f" acked by {r['actor']}"
        why = r["message"] + (f" [muted: {r['muted']} {r['mute_detail'] or ''}]"
                              if r["muted"] else "")
        table.add_row(timefmt.show(r["time"], cfg.timezone), r["check"], change,
                      value_text(r["value"]), why)
    out.print(table)
    if not rows:
        out.print("no transitions in that period")


@app.command()
def ack(
    config: ConfigOpt,
    check_id: Annotated[str, typer.Argument(help="The check to acknowledge.")],
    who: Annotated[str | None, typer.Option("--as", help="Who acknowledges (default: $USER).")]
    = None,
    as_json: JsonOpt = False,
) -> None:
    """Acknowledge a check's alarm (stops repeats; a latched alarm clears if OK now).

    The running engine applies it. With no engine running the ack is queued (exit 0)
    and applied when `beamwatch run` starts, if within 24 h."""
    from .api import service

    cfg = config_or_exit(config)
    result = service.acknowledge(cfg, open_store(cfg), check_id, who or getpass.getuser())
    if as_json:
        print(json.dumps({"ok": result.ok, "message": result.message, "queued": result.queued,
                          "engine_running": result.engine_running}))
    else:
        (out if result.ok else err).print(result.message, markup=False, soft_wrap=True)
    raise typer.Exit(0 if result.ok else 2)


@app.command()
def report(
    config: ConfigOpt,
    since: Annotated[str, typer.Option(help="How far back: 7d, 24h, or a time.")] = "7d",
    as_json: JsonOpt = False,
) -> None:
    """Human load: alarms and pages per person per hour, peaks, floods, chattering and
    standing alarms, the most frequent checks (ISA-18.2 / EEMUA 191)."""
    from .api import service

    cfg = config_or_exit(config)
    try:
        start = timefmt.parse_when(since, cfg.timezone)
    except ValueError as e:
        fail(f"--since: {e}")
    rep = service.load_report(cfg, open_store(cfg), start)
    if as_json:
        print(rep.to_json())
        return
    out.print(f"[bold]{cfg.beamline}[/] since {timefmt.show(start, cfg.timezone)} "
              f"({rep.hours:.1f} h): {rep.alarms} alarms, {rep.alarms_per_hour:.1f}/h "
              f"— [bold]{rep.rating}[/] (ISA-18.2: ≤6/h acceptable, ≤12/h manageable)")
    out.print(f"peak {rep.peak_alarms_10min} alarms in 10 min; floods (>10 in 10 min): "
              f"{rep.flood_periods} ({rep.flood_share:.1%} of the time)")
    out.print(f"pages: {rep.pages} ({rep.pages_per_hour:.2f}/h), peak {rep.peak_pages_10min} "
              f"in 10 min; muted activations: "
              + (", ".join(f"{k} {v}" for k, v in sorted(rep.muted.items())) or "none"))
    tables = [
        ("pages per person", ("person", "pages", "per hour", "peak 10 min"),
         [(p.person, str(p.pages), f"{p.per_hour:.2f}", str(p.peak_10min)) for p in rep.people]),
        ("most frequent", ("check", "alarms", "share"),
         [(c.check_id, str(c.count), f"{c.share:.0%}") for c in rep.most_frequent]),
        ("chattering (≥3 activations in a minute)", ("check", "peak per minute"),
         [(c.check_id, str(c.peak_per_minute)) for c in rep.chattering]),
        ("standing (active > 24 h)", ("check", "since", "hours", "still active"),
         [(c.check_id, timefmt.show(c.since, cfg.timezone), f"{c.hours:.0f}",
           "yes" if c.still_active else "no") for c in rep.stale]),
    ]
    for title, cols, rows in tables:
        if not rows:
            continue
        table = Table(title=title)
        for col in cols:
            table.add_column(col)
        for row in rows:
            table.add_row(*row)
        out.print(table)


@app.command("notify-test")
def notify_test(
    config: ConfigOpt,
    to: Annotated[str, typer.Option("--to", help="channel:NAME, person:NAME or "
                                                   "person:NAME/KIND.")],
    as_json: JsonOpt = False,
) -> None:
    """Send a real test message and say, per destination, whether it arrived."""
    from .notify.registry import NotifyConfigError
    from .notify.registry import notify_test as send_test

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


@app.command()
def demo(
    config: ConfigOpt = Path("examples/i04-demo.yaml"),
) -> None:
    """Start the simulated beamline and the monitor, and say what to look at."""
    from .sim.demo import run_demo

    config_or_exit(config)
    run_demo(config)


def _mount_optional() -> None:
    """Sub-commands that live with their subsystem."""
    try:
        from .sim.cli import app as sim_app
    except ImportError:  # pragma: no cover - during development only
        return
    app.add_typer(sim_app, name="sim", help="The simulated MX beamline (a real EPICS IOC).")


def _register_subsystems() -> None:
    from .routing.cli import register as register_routing

    register_routing(app)
    from .api.noise_cli import register as register_noise

    register_noise(app)
    from .api.replay_cli import register as register_replay

    register_replay(app)


_register_subsystems()


_mount_optional()


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
