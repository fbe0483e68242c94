"""`beamwatch check / run / demo`: validate a config, watch the beamline, or
watch the simulated one."""

from __future__ import annotations

import asyncio
from pathlib import Path

import typer

from ..config import Config, ConfigError
from .common import (
    ConfigOpt,
    config_error_exit,
    config_or_exit,
    err,
    fail,
    first_line,
    out,
    safe_url,
)


def check_command(config: ConfigOpt) -> None:
    """Validate a config file; print every problem as FILE:LINE:COL: key: message."""
    cfg = config_or_exit(config)
    out.print(f"{config}: OK — beamline {cfg.beamline}, {len(cfg.checks)} checks, "
              f"{len(cfg.routes)} routes", markup=False)


RETRY_START = 5.0  # seconds before an instance whose start as leader failed stands by again


def run_command(config: ConfigOpt) -> None:
    """Watch the beamline (runs until SIGTERM or Ctrl-C; SIGHUP reloads the config).

    Two of them with the same config and PostgreSQL store are an HA pair: one leads,
    the other stands by and takes over if the leader dies, hangs or is cut off."""
    import time

    from ..app import FAILED, STEPPED_DOWN

    loaded: Config | None = config_or_exit(config)  # read once: 10k checks take a second
    first = True
    while True:  # an instance that lost the lead to the other starts again as standby
        application, services = _start(config, first, loaded)
        first, loaded = False, None  # a later start reads the file again (it may have changed)
        try:
            outcome = asyncio.run(application.run(services=services))
        except KeyboardInterrupt:
            return
        if outcome == FAILED:
            time.sleep(RETRY_START)  # not a tight loop while the store is away
            err.print("beamwatch: the store failed as this instance took the lead; "
                      "standing by again", markup=False)
        elif outcome == STEPPED_DOWN:
            err.print("beamwatch: another instance leads now; standing by", markup=False)
        else:
            return


def _start(config: Path, first: bool, loaded: Config | None = None) -> tuple:
    """The App and what it serves (the HTTP server bound now: a port in use stops us
    at once, not later)."""
    from .. import slack
    from ..app import App
    from ..web.server import WebError, for_app

    try:
        application = App(config, config=loaded)
    except ConfigError as e:
        config_error_exit(e)
    except Exception as e:
        fail(f"cannot start: {first_line(e)}", 1)
    bot = slack.for_app(application)
    try:
        web = for_app(application, slack=bot)
    except WebError as e:
        application.store.close()
        fail(str(e), 1)
    served = ""
    if web is not None:
        application.serving(web.url)
        served = f"; HTTP API on {web.url}"
    if bot is not None:
        served += f"; Slack bot ({bot.settings.mode} mode)"
    services = ([web.serve] if web is not None else []) + ([bot.serve] if bot else [])
    if first:
        err.print(f"beamwatch: watching {len(application.config.checks)} checks of "
                  f"{application.config.beamline}; log in "
                  f"{safe_url(application.config.storage.url)}{served}; Ctrl-C stops",
                  markup=False, soft_wrap=True)
    return application, services


def demo_command(
    config: ConfigOpt = Path("examples/i04-demo.yaml"),
) -> None:
    """Start the simulated beamline and the monitor, and say what to look at."""
    from ..sim.demo import run_demo

    config_or_exit(config)
    run_demo(config)


def register(app: typer.Typer) -> None:
    """Add check, run and demo to `app`."""
    app.command("check")(check_command)
    app.command("run")(run_command)
    app.command("demo")(demo_command)
