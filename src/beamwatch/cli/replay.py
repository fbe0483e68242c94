"""`beamwatch replay`: a thin typer command over `api/replay.py`.

The lead's cli.py mounts it with `register(app)`. The helpers of cli.py
(`config_or_exit`, `fail`, the consoles) are imported when the command runs,
not at import time, because cli.py imports this module while it is itself
being imported.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from .. import timefmt
from ..config.types import parse_duration
from .replay import BOTH, ONLY_NEW, ONLY_OLD, Progress, ReplayReport, replay

ConfigOpt = Annotated[Path, typer.Option("--config", "-c", help="The beamwatch YAML config file "
                                         "to try (its storage.url names the log to replay).",
                                         envvar="BEAMWATCH_CONFIG")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
VERDICT_STYLE = {BOTH: "dim", ONLY_NEW: "bold yellow", ONLY_OLD: "bold red"}


def _cli():
    from .. import cli

    return cli


def replay_command(
    config: ConfigOpt,
    since: Annotated[str, typer.Option(help="From when: 24h, 7d, or a time.")] = "24h",
    until: Annotated[str, typer.Option(help="Until when: now, 2h (ago), or a time.")] = "now",
    tolerance: Annotated[str, typer.Option(
        help="Notifications this close in time count as the same.")] = "5m",
    warmup: Annotated[str, typer.Option(
        help="Replay this much before --since first (alarms already standing).")] = "1h",
    as_json: JsonOpt = False,
) -> None:
    """Re-run a config over the stored history and print what it would have notified
    versus what was notified — a dry run of a config change before it goes live.
    Nothing is sent and the log is only read."""
    cli = _cli()
    cfg = cli.config_or_exit(config)
    try:
        start = timefmt.parse_when(since, cfg.timezone)
    except ValueError as e:
        cli.fail(f"--since: {e}")
    try:
        end = timefmt.parse_when(until, cfg.timezone)
    except ValueError as e:
        cli.fail(f"--until: {e}")
    if end <= start:
        cli.fail("--until must be after --since")
    try:
        slack, lead = parse_duration(tolerance), parse_duration(warmup)
    except ValueError as e:
        cli.fail(f"--tolerance/--warmup: {e}")
    store = _open_read_only(cfg)
    try:
        with _progress(cli.err) as progress:
            report = replay(cfg, store, start, end, progress, config_path=config,
                            warmup=lead, tolerance=slack)
    except Exception as e:  # a config the notifiers refuse, a store that fails: one line
        logging.getLogger("beamwatch").debug("replay failed", exc_info=True)  # -vv shows it
        cli.fail(f"replay failed: {cli._first_line(e)}", 1)
    finally:
        store.close()
    if as_json:
        print(report.to_json())
        return
    _print(report, config, cfg.timezone, cli.out)


def _open_read_only(cfg):
    """The live log, never created nor migrated by a replay."""
    from ..store import Store

    cli = _cli()
    url = cfg.storage.url
    if url.startswith("sqlite"):
        path = url.split(":///", 1)[-1]
        if not path or path == ":memory:" or not Path(path).exists():
            cli.fail(f"no beamline log at {cli._safe_url(url)} (storage.url): nothing to replay",
                     1)
    try:
        return Store(url, migrate=False)
    except Exception as e:
        cli.fail(f"cannot open the store {cli._safe_url(url)}: {cli._first_line(e)}", 1)


@contextmanager
def _progress(console) -> Iterator[Progress | None]:
    """A progress bar on a terminal (stderr); nothing in a pipe."""
    if not console.is_terminal:
        yield None
        return
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("replaying"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                  TimeElapsedColumn(), console=console, transient=True) as bar:
        task = bar.add_task("replay", total=1.0)

        def update(done: float, total: float) -> None:
            bar.update(task, completed=done / total if total else 1.0)

        yield update


def _print(report: ReplayReport, path: Path, tz: str, out) -> None:
    show = timefmt.show
    totals = report.totals
    title = (f"{report.beamline}: {path} replayed over {show(report.since, tz)} – "
             f"{show(report.until, tz)} ({tz})")
    if report.rows:
        table = Table(title=escape(title))
        for col in ("time", "check", "receiver", "kind", "verdict", "Δt"):
            table.add_column(col)
        for r in report.rows:
            delta = ""
            if r.verdict == BOTH and r.new and r.old:
                delta = f"{r.new.time - r.old.time:+.0f}s"
            style = VERDICT_STYLE[r.verdict]
            table.add_row(show(r.time, tz), escape(r.check_id), escape(r.receiver), r.kind,
                          f"[{style}]{r.verdict}[/]", delta)
        out.print(table)
    else:
        out.print(escape(title))
        out.print("no notifications in this period, with either config")
    out.print(f"would notify [bold]{report.would_notify}[/], was notified "
              f"[bold]{report.was_notified}[/]: {totals[BOTH]} in both, "
              f"[yellow]{totals[ONLY_NEW]} only with this config[/], "
              f"[red]{totals[ONLY_OLD]} only with the old one[/]; transitions "
              f"{report.transitions_new} vs {report.transitions_old} logged")
    notes = list(report.notes)
    if report.no_data:
        notes.append(f"no data in the log for {len(report.no_data)} check(s) (never alarm "
                     f"here): {', '.join(report.no_data)}")
    if report.not_in_config:
        notes.append(f"in the log but not in this config: {', '.join(report.not_in_config)}")
    for note in notes:
        out.print(f"note: {escape(note)}")
    out.print(f"[dim]{report.samples} samples, {report.ticks} ticks, {report.elapsed:.1f}s. "
              "Approximations:[/]")
    for line in report.approximations:
        out.print(f"[dim]  - {escape(line)}[/]")


def register(app: typer.Typer) -> None:
    """Add `beamwatch replay` to the main typer app."""
    app.command("replay")(replay_command)
