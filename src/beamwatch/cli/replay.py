"""`beamwatch replay / report`: thin typer commands over the service layer
(`api/replay.py`, `api/service.py`) that look back over the beamline log."""

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
from ..api.replay import BOTH, ONLY_NEW, ONLY_OLD, Progress, ReplayReport, replay
from ..timefmt import parse_duration
from .common import (
    ConfigOpt,
    JsonOpt,
    SinceOpt,
    config_or_exit,
    err,
    fail,
    first_line,
    open_store,
    out,
    safe_url,
    since,
)

ReplayConfigOpt = Annotated[Path, typer.Option(
    "--config", "-c", help="The beamwatch YAML config file to try (its storage.url names "
                           "the log to replay).", envvar="BEAMWATCH_CONFIG")]
VERDICT_STYLE = {BOTH: "dim", ONLY_NEW: "bold yellow", ONLY_OLD: "bold red"}


def replay_command(
    config: ReplayConfigOpt,
    since_text: SinceOpt = "24h",
    until: Annotated[str, typer.Option(
        help="Until when: now, 2h (ago), now-2h, or a time like --since.")] = "now",
    tolerance: Annotated[str, typer.Option(
        help="Notifications this close in time count as the same.")] = "5m",
    warmup: Annotated[str, typer.Option(
        help="Replay this much before --since first (alarms already standing).")] = "1h",
    as_json: JsonOpt = False,
) -> None:
    """Re-run a config over the stored history and print what it would have notified
    versus what was notified — a dry run of a config change before it goes live.
    Nothing is sent and the log is only read."""
    cfg = config_or_exit(config)
    start = since("--since", since_text, cfg)
    end = since("--until", until, cfg)
    if end <= start:
        fail("--until must be after --since")
    try:
        slack, lead = parse_duration(tolerance), parse_duration(warmup)
    except ValueError as e:
        fail(f"--tolerance/--warmup: {e}")
    store = _open_read_only(cfg)
    try:
        with _progress(err) as progress:
            report = replay(cfg, store, start, end, progress, config_path=config,
                            warmup=lead, tolerance=slack)
    except Exception as e:  # a config the notifiers refuse, a store that fails: one line
        logging.getLogger("beamwatch").debug("replay failed", exc_info=True)  # -vv shows it
        fail(f"replay failed: {first_line(e)}", 1)
    finally:
        store.close()
    if as_json:
        print(report.to_json())
        return
    _print(report, config, cfg.timezone, out)


def _open_read_only(cfg):
    """The live log, never created nor migrated by a replay."""
    from ..store import Store

    url = cfg.storage.url
    if url.startswith("sqlite"):
        path = url.split(":///", 1)[-1]
        if not path or path == ":memory:" or not Path(path).exists():
            fail(f"no beamline log at {safe_url(url)} (storage.url): nothing to replay", 1)
    try:
        return Store.for_config(cfg, migrate=False)
    except Exception as e:
        fail(f"cannot open the store {safe_url(url)}: {first_line(e)}", 1)


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


def report_command(
    config: ConfigOpt,
    since_text: SinceOpt = "7d",
    as_json: JsonOpt = False,
) -> None:
    """Human load: alarms and pages per person per hour, peaks, floods, chattering and
    standing alarms, the most frequent checks (ISA-18.2 / EEMUA 191)."""
    from ..api import service

    cfg = config_or_exit(config)
    start = since("--since", since_text, cfg)
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


def register(app: typer.Typer) -> None:
    """Add `beamwatch report` and `beamwatch replay` to `app`."""
    app.command("report")(report_command)
    app.command("replay")(replay_command)
