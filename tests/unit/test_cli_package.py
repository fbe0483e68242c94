"""The `beamwatch` command as one package: every command answers --help, the
console script resolves, the service layer stands without the CLI, and a time
typed wrong is one line and exit 2 whatever command reads it."""

from __future__ import annotations

import ast
import textwrap
from importlib.metadata import entry_points
from importlib.util import resolve_name
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

import beamwatch
from beamwatch.cli import app, main

API = Path(beamwatch.__file__).parent / "api"
FRONT_END_ONLY = ("beamwatch.cli", "typer", "rich", "click")


def command_paths(command, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    paths = [path]
    for name, sub in getattr(command, "commands", {}).items():
        paths += command_paths(sub, (*path, name))
    return paths


@pytest.mark.parametrize("path", command_paths(typer.main.get_command(app)),
                         ids=lambda p: " ".join(p) or "beamwatch")
def test_every_command_answers_help(path):
    res = CliRunner().invoke(app, [*path, "--help"])
    assert res.exit_code == 0, res.output
    assert "Usage:" in res.output


def test_the_command_groups_are_all_mounted():
    names = set(typer.main.get_command(app).commands)
    assert names == {"check", "run", "demo", "status", "history", "ack", "report", "replay",
                     "route", "oncall", "notify-test", "silence", "silences", "unsilence",
                     "mode", "sim", "config", "facility", "import"}


def test_the_console_script_is_the_cli_packages_main():
    [script] = [e for e in entry_points(group="console_scripts") if e.name == "beamwatch"]
    assert script.value == "beamwatch.cli:main" and script.load() is main


def imported_modules(source: Path) -> set[str]:
    """Every module (and `from` name) a file of beamwatch.api imports, made absolute."""
    package = ".".join(("beamwatch", *source.relative_to(API.parent).parent.parts))
    names: set[str] = set()
    for node in ast.walk(ast.parse(source.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            module = (resolve_name("." * node.level + (node.module or ""), package)
                      if node.level else node.module or "")
            names |= {module} | {f"{module}.{a.name}" for a in node.names}
    return names


@pytest.mark.parametrize("module", sorted(str(p.relative_to(API)) for p in API.rglob("*.py")))
def test_the_service_layer_imports_no_front_end(module):
    found = {name for name in imported_modules(API / module)
             if any(name == f or name.startswith(f + ".") for f in FRONT_END_ONLY)}
    assert not found, f"api/{module} imports {found}: printing and options belong in cli/"


@pytest.fixture()
def cfg(tmp_path):
    path = tmp_path / "i04.yaml"
    path.write_text(textwrap.dedent(f"""\
        beamline: I04
        timezone: Europe/London
        storage: {{url: "sqlite:///{tmp_path / 'bw.db'}"}}
        checks:
          - {{id: fe-vacuum, pv: "FE:1", group: vacuum}}
        """))
    return str(path)


def one_line_error(res, text: str) -> None:
    assert res.exit_code == 2, res.output
    assert res.stderr == f"beamwatch: {text}\n"
    assert res.stdout == ""


@pytest.mark.parametrize("command", [["history"], ["report"], ["replay"]])
def test_a_bad_since_is_one_line_and_exit_2(cfg, command):
    res = CliRunner().invoke(app, [*command, "-c", cfg, "--since", "3 weeks"])
    one_line_error(res, "--since: '3 weeks' is not a duration or a time; try 24h, "
                        "2026-11-30T08:00 or now-2h")


@pytest.mark.parametrize("command", [["route", "--check", "fe-vacuum"], ["oncall"]])
def test_at_refuses_a_bare_duration_with_a_hint(cfg, command):
    res = CliRunner().invoke(app, [*command, "-c", cfg, "--at", "2h"])
    one_line_error(res, "--at: '2h' is a duration, not a time: say now+2h or now-2h")


@pytest.mark.parametrize("since", ["now-2h", "yesterday 08:00", "08:00", "1w"])
def test_history_takes_every_form_of_since(cfg, since):
    res = CliRunner().invoke(app, ["history", "-c", cfg, "--since", since, "--json"])
    assert res.exit_code == 0, res.output
    assert res.stdout.strip() == "[]"


def test_a_config_error_is_file_line_col_and_exit_2_never_a_traceback(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("beamline: I04\nchecks:\n  - {id: a, pv: 'A:B', for: soon}\n")
    for command in (["check"], ["status"], ["history"], ["silences"], ["oncall"], ["report"]):
        res = CliRunner().invoke(app, [*command, "-c", str(bad)])
        assert res.exit_code == 2, (command, res.output)
        assert res.stderr.startswith(f"{bad}:3:"), (command, res.stderr)
        assert "'soon' is not a duration" in res.stderr and "Traceback" not in res.output
