"""`beamwatch config diff`: what was changed at run time (from Slack, the web or the
CLI) over the config file — subscriptions, quiet hours, on-call takeovers."""

from __future__ import annotations

import json
import time

import typer

from .. import timefmt
from ..api import people
from .common import ConfigOpt, JsonOpt, config_or_exit, open_store

config_app = typer.Typer(help="The config in force: the file and what was changed at run time.",
                         no_args_is_help=True)


@config_app.command("diff")
def diff_command(config: ConfigOpt, as_json: JsonOpt = False) -> None:
    """The runtime overlays over the file: each setting, the file's value, the value in
    force, who changed it, when and from where. Exit 0 either way."""
    cfg = config_or_exit(config)
    store = open_store(cfg)
    lines, skipped = people.diff(cfg, store, time.time())
    if as_json:
        print(json.dumps({"overlays": [line.to_json() for line in lines],
                          "skipped": skipped}, indent=2))
        return
    if not lines and not skipped:
        typer.echo(f"{config}: nothing changed at run time; the file is in force")
    for line in lines:
        o = line.overlay
        typer.echo(f"{line.path}  (by {o.actor} via {o.via}, "
                   f"{timefmt.show(o.time, cfg.timezone, seconds=False)})")
        typer.echo(f"  - file:     {line.was}")
        typer.echo(f"  + in force: {line.now}")
    for why in skipped:
        typer.echo(f"skipped: {why}")


def register(app: typer.Typer) -> None:
    app.add_typer(config_app, name="config")
