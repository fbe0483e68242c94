"""One simulated IOC process: EPICS base's soft IOC, run from Python.

    python -m beamwatch.sim.ioc --name optics -m "P=,IOC=BL04I-MO-IOC-01" -d gauge.db ...

This is `python -m epicscorelibs.ioc` (the same `start_ioc()`, the same `-m`
then `-d` arguments, each `-d` taking the macros given before it) with two
differences that matter on a shared machine and in CI:

- Channel Access only, unless `--pva`: then pvxs's QSRV serves the records over
  PVAccess too (as `python -m pvxslibs.ioc`), on the interfaces and ports of
  the EPICS_PVAS_* environment, which the supervisor keeps on loopback.
- No Python REPL. The process lives until its stdin reaches end-of-file, or
  SIGTERM/SIGINT. The supervisor holds the stdin pipe open, so when the
  supervisor dies, even by SIGKILL, the pipe closes and every IOC exits
  with it instead of lingering. Lines written to stdin are run as iocsh
  commands (`dbl`, `dbpf NAME VALUE`...), which helps when debugging by hand.
"""

from __future__ import annotations

import argparse
import signal
import sys


class _LoadAction(argparse.Action):
    """`-d FILE` takes the macros of the latest `-m`, as in epicscorelibs.ioc."""

    def __call__(self, parser, namespace, values, option_string=None):  # noqa: ANN001
        namespace.database.append((values, namespace.macros))


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m beamwatch.sim.ioc",
                                description="Run one simulated IOC (PVAccess too with --pva).")
    p.add_argument("--name", default="ioc", help="Name for messages.")
    p.add_argument("-m", "--macros", default="", help="Macros for the following -d.")
    p.add_argument("-d", "--database", default=[], action=_LoadAction, help="A .db file.")
    p.add_argument("--pva", action="store_true", help="Serve PVAccess too (QSRV of pvxs).")
    return p


def _stop(signum: int, frame: object) -> None:
    raise SystemExit(0)


def _pva_server() -> tuple[tuple, tuple]:
    """What `python -m pvxslibs.ioc` loads into the soft IOC."""
    import os

    import pvxslibs.path

    os.environ.setdefault("PVXS_QSRV_ENABLE", "YES")
    return (("pvxsIoc.dbd", pvxslibs.path.dbd_path),), ("pvxslibs.lib.pvxsIoc",)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if not args.database:
        print("beamwatch.sim.ioc: no database given (-d FILE)", file=sys.stderr)
        return 2
    # Importing loads libCom/libdbCore and registers EPICS' exit handlers at exit.
    from epicscorelibs import ioc as softioc

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    dbd_load, dso_load = _pva_server() if args.pva else ((), ())
    softioc.start_ioc(dbs=args.database, extra_dbd_load=dbd_load, extra_dso_load=dso_load)
    print(f"beamwatch.sim.ioc: {args.name} running", file=sys.stderr, flush=True)
    for line in sys.stdin:  # until EOF: the supervisor is gone or wants us gone
        command = line.strip()
        if command:
            softioc.ioc(command)
    print(f"beamwatch.sim.ioc: {args.name} stopping (stdin closed)", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
