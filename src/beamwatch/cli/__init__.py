"""The `beamwatch` command. Thin: parse, call the service layer (`api/`), print.

One module per command group, each with `register(app)`; `common` holds the
shared options, the error handling and the consoles. Every command has --help;
those a script would read have --json. Errors are one clear line on stderr and
an exit code (2 = bad input), never a traceback. Nothing below `cli/` imports
it: the service layer, the bot and the web stand on their own.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from .. import logs
from ..sim.cli import app as sim_app
from . import facility, importers, noise, overlays, replay, routing, run, state

__all__ = ["app", "main"]

app = typer.Typer(
    help="beamwatch: watches a beamline and tells the right person, once.",
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
)


@app.callback()
def main_options(
    verbose: Annotated[int, typer.Option("--verbose", "-v", count=True,
                                         help="More log output (-v info, -vv debug).")] = 0,
    log_json: Annotated[bool, typer.Option("--log-json", help="Log as JSON lines.")] = False,
) -> None:
    logs.setup(verbose, log_json)


for _group in (run, state, replay, routing, noise, overlays, facility, importers):
    _group.register(app)
app.add_typer(sim_app, name="sim", help="The simulated MX beamline (a real EPICS IOC).")


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
