"""`beamwatch import phoebus`: other alarm systems' configurations as beamwatch checks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from .common import JsonOpt, fail, note

import_app = typer.Typer(help="Write beamwatch checks from another alarm system's "
                              "configuration.", no_args_is_help=True)


@import_app.command("phoebus")
def phoebus_command(
    file: Annotated[Path, typer.Argument(help="A Phoebus alarm configuration (XML, as "
                                              "alarm-server -export writes it).")],
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="Write the YAML here (default: standard output).")] = None,
    fragment: Annotated[bool, typer.Option(
        "--fragment", help="Only the checks: list, to paste into an existing config.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Each PV becomes a check (group = its component path, delay -> for:, count -> count:,
    latching -> latch:, guidance/displays/commands -> runbook:). Everything that does not
    map exactly is listed per PV, on stderr (or in --json) and as comments in the YAML.
    The result passes `beamwatch check`."""
    from ..importers.phoebus import PhoebusError, import_file

    try:
        result = import_file(file, fragment=fragment)
    except PhoebusError as e:
        fail(str(e))
    text = result.yaml()
    if output is not None:
        try:
            output.write_text(text)
        except OSError as e:
            fail(f"{output}: cannot write: {e.strerror}", code=1)
    if as_json:
        report = result.to_json()
        report["output"] = str(output) if output is not None else None
        if output is None:
            report["yaml"] = text
        print(json.dumps(report, indent=2))
        return
    if output is None:
        typer.echo(text, nl=False)
    note(f"{result.imported} of {len(result.pvs)} PVs of {file} are checks"
         + (f", written to {output}" if output is not None else ""))
    for pv in result.pvs:
        if pv.notes:
            typer.echo(f"  {pv.pv} ({pv.file}:{pv.line}) -> "
                       f"{'check ' + pv.check if pv.check else 'no check'}", err=True)
            for n in pv.notes:
                typer.echo(f"    {n.item}: {n.what}: {n.why}", err=True)
    for problem in result.problems:
        typer.echo(f"  {problem}", err=True)


def register(app: typer.Typer) -> None:
    """Add `import phoebus` to `app`."""
    app.add_typer(import_app, name="import")
