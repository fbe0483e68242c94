"""`beamwatch sim …`: run the simulated beamline, list and inject faults.

`run` is the supervisor in the foreground. `fault` and `clear` are plain CA
puts to the sim-control IOC, so they work from any shell whatever started
the sim (`sim run`, `beamwatch demo`, a test's SimBeamline), as long as
--prefix and --base-port match it. Errors are one line on stderr and exit
code 2, never a traceback.
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
from pathlib import Path
from typing import Annotated, NoReturn

import typer

from . import ca, faults
from .errors import SimError
from .files import DEFAULT_DATA_DIR
from .inventory import IOC_NAMES
from .layout import DEFAULT_BASE_PORT, SimLayout

app = typer.Typer(
    help="The simulated MX beamline: real EPICS IOCs on loopback, with faults to inject.",
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
)

PrefixOpt = Annotated[str, typer.Option(
    "--prefix", envvar="BEAMWATCH_SIM_PREFIX",
    help="Prefix in front of every PV name (default: none, the real Diamond names).")]
BasePortOpt = Annotated[int, typer.Option(
    "--base-port", envvar="BEAMWATCH_SIM_BASE_PORT",
    help="First port: IOCs on BASE..BASE+4, the CA beacon repeater on BASE+5.")]


def _fail(message: str) -> NoReturn:
    typer.echo(f"beamwatch sim: {message}", err=True)
    raise typer.Exit(2)


def _layout(prefix: str, base_port: int) -> SimLayout:
    try:
        return SimLayout(prefix, base_port)
    except SimError as e:
        _fail(str(e))


def _inject(layout: SimLayout, name: str, ioc: str | None,
            rate: float | None = None) -> tuple[str, int | float | str]:
    """One fault by CA put from this process (whose CA env is set here, first)."""
    os.environ.update(layout.client_env)

    async def go() -> tuple[str, int | float | str]:
        try:
            return await faults.inject(layout, name, ioc, rate=rate)
        finally:
            ca.close()

    try:
        return asyncio.run(go())
    except SimError as e:
        _fail(str(e))


@app.command()
def run(
    prefix: PrefixOpt = "",
    base_port: BasePortOpt = DEFAULT_BASE_PORT,
    workdir: Annotated[Path | None, typer.Option(
        "--workdir", help="Where the IOC logs go (default: a new temporary directory).")] = None,
    ispyb: Annotated[Path, typer.Option(
        "--ispyb", help="The ISPyB-like SQLite queue that sql: checks read (the demo "
                        "config's).")] = Path("beamwatch-demo-ispyb.db"),
    data_dir: Annotated[Path, typer.Option(
        "--data-dir", help="Where the detector writes images and its log (the demo "
                           "config's file: and log: checks read them here).")
    ] = DEFAULT_DATA_DIR,
) -> None:
    """Start every IOC of the simulated beamline and run until Ctrl-C or SIGTERM."""
    from .supervisor import Startup, run_foreground

    layout = _layout(prefix, base_port)
    where = workdir or Path(tempfile.mkdtemp(prefix="beamwatch-sim-"))

    def ready(startup: Startup) -> None:
        helpers = startup.pvs - startup.beamline_pvs
        typer.echo(f"Simulated beamline up in {startup.seconds:.1f}s: {startup.pvs} PVs "
                   f"({startup.beamline_pvs} beamline, {helpers} sim helpers) "
                   f"on {len(layout.iocs)} IOCs")
        for spec in layout.iocs:
            typer.echo(f"  {spec.name:<11} {spec.address:<16} {spec.definition.ioc:<17} "
                       f"{spec.definition.title}")
        typer.echo(f"  {'repeater':<11} {layout.repeater_port} (UDP, CA beacons)")
        typer.echo(f"  {'status':<11} {layout.status_url}/api/status (HTTP, GDA's state)")
        served = ", ".join(s.name for s in layout.iocs if s.definition.pva)
        typer.echo(f"  {'pva':<11} {layout.pva_address:<16} (PVAccess of: {served})")
        if startup.unsettled:
            typer.echo(f"  not settled yet: {', '.join(startup.unsettled[:5])}")
        typer.echo("Point a CA client at it:")
        for key, value in layout.client_env.items():
            typer.echo(f'  export {key}="{value}"')
        typer.echo("Faults: `beamwatch sim faults`, `beamwatch sim fault NAME`, "
                   "`beamwatch sim clear`")
        typer.echo(f"Logs in {where}; images and detector log in {data_dir}. Ctrl-C stops.")

    try:
        asyncio.run(run_foreground(layout, where, ready, typer.echo, ispyb.resolve(),
                                   data_dir))
    except SimError as e:
        _fail(str(e))
    except KeyboardInterrupt:  # a second Ctrl-C while stopping
        pass


@app.command()
def fault(
    name: Annotated[str, typer.Argument(help="The fault to inject; `faults` lists them.")],
    ioc: Annotated[str | None, typer.Option(
        "--ioc", help=f"For ioc-down: the IOC to stop ({', '.join(IOC_NAMES[:-1])}).")] = None,
    rate: Annotated[float | None, typer.Option(
        "--rate", help="For the slow faults (dewar-draining %/min, disk-filling %/min, "
        "cryojet-drift K/min): how fast; default a realistic pace.")] = None,
    prefix: PrefixOpt = "",
    base_port: BasePortOpt = DEFAULT_BASE_PORT,
) -> None:
    """Inject a named fault into the running simulated beamline."""
    try:
        faults.plan(name, ioc, rate)  # a bad name fails here, before any network
    except SimError as e:
        _fail(str(e))
    pv, value = _inject(_layout(prefix, base_port), name, ioc, rate)
    unit = faults.get(name).rate_unit
    typer.echo(f"{name}: {pv} = {value}" + (f" {unit}" if unit else ""))
    if name == "ioc-down":
        typer.echo(f"the supervisor stops IOC {value} now; `beamwatch sim clear` brings it back")


@app.command("faults")
def list_faults(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """List the faults that `fault` injects, one line each."""
    if as_json:
        typer.echo(json.dumps([f.to_json() for f in faults.FAULTS.values()], indent=2))
        return
    width = max(len(name) for name in faults.FAULTS)
    for f in faults.FAULTS.values():
        typer.echo(f"{f.name:<{width}}  {f.summary}")


@app.command()
def clear(
    prefix: PrefixOpt = "",
    base_port: BasePortOpt = DEFAULT_BASE_PORT,
) -> None:
    """Clear every fault and start a stopped IOC again; readings recover in seconds."""
    pv, _ = _inject(_layout(prefix, base_port), "clear", None)
    typer.echo(f"cleared ({pv}): every fault off; a stopped IOC is restarting")
