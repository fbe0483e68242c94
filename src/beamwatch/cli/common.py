"""What every `beamwatch` command shares: the options, reading the config,
opening the store, the consoles, and errors as one line and an exit code.

Exit codes: 0 done, 1 something outside the user's input failed (the store,
a channel), 2 bad input (a config problem, an unknown check, an unreadable
time). Never a traceback.
"""

from __future__ import annotations

import getpass
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console

from .. import timefmt
from ..config import Config, ConfigError, load_config

ConfigOpt = Annotated[Path, typer.Option("--config", "-c", help="The beamwatch YAML config file.",
                                         envvar="BEAMWATCH_CONFIG")]
MaybeConfigOpt = Annotated[Path | None, typer.Option(
    "--config", "-c", help="The beamwatch YAML config file.", envvar="BEAMWATCH_CONFIG")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
AsOpt = Annotated[str | None, typer.Option("--as", help="Who does it (default: $USER).")]
SinceOpt = Annotated[str, typer.Option(
    "--since", help="From when: a duration back from now (24h, 7d), now-2h, 08:00, "
                    "yesterday 08:00 or 2026-11-30T08:00 (in the config's timezone).")]
AtOpt = Annotated[str, typer.Option(
    "--at", help="When: 'now', 'now+2h', '03:00' (the next), 'tomorrow 03:00' or ISO 8601 "
                 "(naive = the config timezone).")]

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)


def fail(message: str, code: int = 2) -> NoReturn:
    """One line on stderr, never wrapped (a rich console wraps at 80 columns in a pipe)."""
    typer.echo(f"beamwatch: {message}", err=True)
    raise typer.Exit(code)


def note(text: str) -> None:
    typer.echo(f"beamwatch: {text}", err=True)


def config_error_exit(e: ConfigError) -> NoReturn:
    """Every problem as FILE:LINE:COL: key: message, then exit 2."""
    for issue in e.issues:
        typer.echo(str(issue), err=True)
    raise typer.Exit(2)


def config_or_exit(path: Path) -> Config:
    try:
        return load_config(path)
    except ConfigError as e:
        config_error_exit(e)


def open_store(config: Config):
    from ..store import Store

    try:
        return Store.for_config(config)
    except Exception as e:  # a database that is not there, a file we cannot write
        fail(f"cannot open the store {safe_url(config.storage.url)}: {first_line(e)}", 1)


def in_force(config: Config) -> Config:
    """The config with the runtime overlays of its store (subscriptions, quiet hours and
    on-call changed from Slack or the web); the file's alone when there is no store yet or
    it cannot be read (said on stderr)."""
    from sqlalchemy.engine import make_url

    from ..api import people

    url = make_url(config.storage.url)
    if url.get_backend_name() == "sqlite" and not (url.database and Path(url.database).exists()):
        return config
    try:
        from ..store import Store

        store = Store.for_config(config)
        try:
            return people.in_force(config, store)
        finally:
            store.close()
    except Exception as e:
        note(f"warning: runtime overlays not applied (cannot read the store: {first_line(e)})")
        return config


def safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<storage url>"


def first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]


@contextmanager
def service_errors() -> Iterator[None]:
    """Service errors: one line, exit 2. Database errors: one line, exit 1."""
    from sqlalchemy.exc import SQLAlchemyError

    from ..api.noise import ServiceError

    try:
        yield
    except ServiceError as e:
        fail(e.message)
    except SQLAlchemyError as e:
        fail(f"the store failed: {first_line(e)}", 1)


def who(given: str | None) -> str:
    if given is not None:
        return given
    try:
        return getpass.getuser()
    except Exception:  # no $USER and no passwd entry (some containers)
        fail("cannot tell who you are: say --as NAME")


def since(option: str, text: str, config: Config) -> float:
    """A past time typed for `option` (--since, replay's --until): 24h, now-2h, ISO…"""
    try:
        return timefmt.parse_when(text, config.timezone)
    except ValueError as e:
        fail(f"{option}: {e}")


def at(option: str, text: str, config: Config, now: float) -> float:
    """A moment typed for `option` (--at): now, now+2h, 03:00, ISO…"""
    try:
        return timefmt.parse_at(text, config.timezone, now)
    except ValueError as e:
        fail(f"{option}: {e}")
