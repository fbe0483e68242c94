"""`beamwatch silence / silences / unsilence / mode` through typer, on a temporary SQLite store."""

from __future__ import annotations

import json
import os
import socket
import textwrap
import time

import pytest
import typer
from typer.testing import CliRunner

from beamwatch.cli.noise import register
from beamwatch.store import Store
from beamwatch.store.noise import NoiseStore

CONFIG = """\
    beamline: I04
    timezone: Europe/London
    storage: {{url: "sqlite:///{db}"}}
    modes: {{names: [user, unattended, maintenance, shutdown], default: user}}
    checks:
      - {{id: fe-vacuum, pv: "FE:1", group: vacuum}}
      - {{id: fe-shutter, pv: "FE:2", group: frontend, modes: [user, unattended]}}
      - {{id: dcm-temp, pv: "DCM:1", group: optics}}
      - {{id: dcm-flow, pv: "DCM:2", group: optics}}
    """


@pytest.fixture()
def app():
    app = typer.Typer(no_args_is_help=True, add_completion=False,
                      pretty_exceptions_enable=False)

    @app.callback()
    def main() -> None:
        """beamwatch (test app)."""

    register(app)
    return app


@pytest.fixture()
def cfg(tmp_path):
    path = tmp_path / "i04.yaml"
    path.write_text(textwrap.dedent(CONFIG.format(db=tmp_path / "bw.db")))
    return str(path)


@pytest.fixture()
def run(app, monkeypatch, wide_output):
    monkeypatch.delenv("BEAMWATCH_CONFIG", raising=False)
    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(app, list(args), catch_exceptions=False)

    return invoke


def one_line_error(result, text: str) -> None:
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("beamwatch: ")
    assert text in result.stderr
    assert "Traceback" not in result.output


# --- silences -----------------------------------------------------------------------------------


def test_silence_then_list_then_unsilence(run, cfg):
    r = run("silence", "-c", cfg, "fe-vacuum", "--for", "2h", "--reason", "replacing gauge",
            "--as", "ana")
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith("silence 1: check=fe-vacuum until ")
    assert "(in 2h00m), by ana: replacing gauge" in r.stdout
    assert "covers 1 check: fe-vacuum" in r.stdout
    r = run("silence", "-c", cfg, "group=optics", "severity=minor", "--for", "1h", "-r",
            "bake-out", "--as", "ben")
    assert r.exit_code == 0 and "covers 2 checks: dcm-temp, dcm-flow" in r.stdout

    r = run("silences", "-c", cfg)
    assert r.exit_code == 0, r.output
    assert "I04 silences — 2 in force" in r.stdout
    for text in ("check=fe-vacuum", "ana", "replacing gauge", "(in 1h59m)", "group=optics",
                 "severity=minor", "dcm-temp, dcm-flow", "bake-out"):
        assert text in r.stdout, text

    r = run("unsilence", "-c", cfg, "1", "--as", "ben")
    assert r.exit_code == 0, r.output
    assert r.stdout == "silence 1 ended by ben (check=fe-vacuum: replacing gauge)\n"
    r = run("silences", "-c", cfg)
    assert "replacing gauge" not in r.stdout and "1 in force" in r.stdout
    r = run("silences", "-c", cfg, "--all")
    assert "ana (ended by ben)" in r.stdout and "expired" in r.stdout

    one_line_error(run("unsilence", "-c", cfg, "1", "--as", "ben"),
                   "silence 1 already ended early by ben")
    one_line_error(run("unsilence", "-c", cfg, "42"), "no silence 42")
    one_line_error(run("unsilence", "-c", cfg, "fe-vacuum"), "'fe-vacuum' is not a silence id")


def test_several_check_ids_silence_each_of_them(run, cfg):
    r = run("silence", "-c", cfg, "fe-vacuum", "dcm-temp", "--for", "90m", "-r", "both",
            "--as", "ana")
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith("silence 1: check=~fe-vacuum|dcm-temp until ")
    assert "covers 2 checks: fe-vacuum, dcm-temp" in r.stdout


def test_silence_json_and_silences_json(run, cfg):
    r = run("silence", "-c", cfg, "fe-shutter", "--until", "2099-01-01T00:00", "-r", "r",
            "--as", "ana", "--json")
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert data["id"] == "1" and data["matchers"] == ["check=fe-shutter"]
    assert data["end_text"] == "2099-01-01T00:00:00+00:00" and data["state"] == "active"
    assert data["covers"] == ["fe-shutter"] and data["author"] == "ana"
    listed = json.loads(run("silences", "-c", cfg, "--json").stdout)
    assert [s["id"] for s in listed] == ["1"]
    ended = json.loads(run("unsilence", "-c", cfg, "1", "--json", "--as", "x").stdout)
    assert ended["state"] == "expired" and ended["expired_by"] == "x"
    assert json.loads(run("silences", "-c", cfg, "--json").stdout) == []
    assert len(json.loads(run("silences", "-c", cfg, "--json", "--all").stdout)) == 1


def test_silence_defaults_to_the_login_name(run, cfg, monkeypatch):
    monkeypatch.setattr("getpass.getuser", lambda: "carl")
    r = run("silence", "-c", cfg, "dcm-temp", "--for", "10m", "-r", "r", "--json")
    assert json.loads(r.stdout)["author"] == "carl"


@pytest.mark.parametrize(("args", "message"), [
    (["fe-vacum", "--for", "2h", "-r", "x"],
     "'fe-vacum' is not a configured check (did you mean fe-vacuum?)"),
    (["group=vacum", "--for", "2h", "-r", "x"], "no check has group 'vacum'"),
    (["group=~nothing", "--for", "2h", "-r", "x"],
     "matches none of the 11 configured checks: fe-vacuum, fe-shutter, dcm-temp, dcm-flow"),
    (["group=~.*", "--for", "2h", "-r", "x"], "would silence every alarm"),
    (["fe-vacuum", "--for", "2h"], "a silence needs a reason"),
    (["fe-vacuum", "-r", "x"], "say how long (for 2h) or until when (until 14:00)"),
    (["fe-vacuum", "-r", "x", "--until", "2h"], "'2h' is a duration, not a time"),
    (["fe-vacuum", "-r", "x", "--until", "2020-01-01T00:00"], "is in the past"),
    (["fe-vacuum", "-r", "x", "--for", "soon"], "'soon' is not a duration"),
    (["fe-vacuum", "-r", "x", "--for", "1h", "--as", ""], "a silence needs an author"),
])
def test_silence_errors_are_one_line(run, cfg, args, message):
    one_line_error(run("silence", "-c", cfg, *args), message)
    assert run("silences", "-c", cfg, "--json", "--all").stdout.strip() == "[]"


def test_no_silences(run, cfg):
    assert run("silences", "-c", cfg).stdout == "no silences in force\n"
    assert run("silences", "-c", cfg, "--all").stdout == "no silences\n"


def test_a_bad_config_exits_2_without_traceback(run, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("beamline: I04\nbogus: 1\n")
    r = run("silences", "-c", str(bad))
    assert r.exit_code == 2 and "bogus" in r.stderr and "Traceback" not in r.output


# --- the mode -------------------------------------------------------------------------------------


def test_mode_show_set_clear(run, cfg):
    r = run("mode", "-c", cfg)
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith("mode: user — the configured default (no mode change logged yet)")
    assert "modes: user, unattended, maintenance, shutdown (default user)" in r.stdout
    assert "`beamwatch run` is not running" in r.stderr

    r = run("mode", "set", "maintenance", "-c", cfg, "--for", "8h", "-r", "vacuum work",
            "--as", "ana")
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith("mode maintenance until ")
    assert "(in 8h00m), set by ana: vacuum work" in r.stdout
    assert "it applies the override when it starts" in r.stderr

    r = run("mode", "-c", cfg, "--json")
    data = json.loads(r.stdout)
    assert (data["mode"], data["source"]) == ("maintenance", "override")
    assert data["override"]["author"] == "ana" and data["override"]["reason"] == "vacuum work"
    assert data["engine_running"] is False and data["recent_changes"] == []
    r = run("mode", "-c", cfg)
    assert r.stdout.startswith("mode: maintenance — override: maintenance until ")

    r = run("mode", "clear", "-c", cfg, "--as", "ben")
    assert r.exit_code == 0, r.output
    assert r.stdout == ("mode override maintenance (set by ana: vacuum work) cleared; the "
                        "mode PV, schedule or default decides again\n")
    r = run("mode", "clear", "-c", cfg)
    assert r.exit_code == 0 and r.stdout == "no mode override in force: nothing to clear\n"
    assert json.loads(run("mode", "clear", "-c", cfg, "--json").stdout)["cleared"] is False
    assert json.loads(run("mode", "-c", cfg, "--json").stdout)["mode"] == "user"


def test_mode_config_before_the_subcommand_and_from_the_environment(run, cfg, monkeypatch):
    r = run("mode", "-c", cfg, "set", "shutdown", "--until", "2099-01-01T00:00", "-r", "off",
            "--as", "ana", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["override"]["until_text"] == "2099-01-01T00:00:00+00:00"
    monkeypatch.setenv("BEAMWATCH_CONFIG", cfg)
    r = run("mode")
    assert r.exit_code == 0 and r.stdout.startswith("mode: shutdown — override")
    assert run("mode", "clear").exit_code == 0


def test_mode_shows_the_engine_log(run, cfg, tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'bw.db'}")
    from beamwatch.engine.modes import ModeChange, ModeSource

    now = time.time()
    NoiseStore(store).log_mode_changes([
        ModeChange(now - 3600, "user", "unattended", ModeSource.PV, None, "mode PV reads '2'")])
    store.beat("engine", os.getpid(), socket.gethostname(), now - 10, now, "i04.yaml")
    store.close()
    r = run("mode", "-c", cfg)
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith("mode: unattended — from pv, since ")
    assert "(1h00m ago)" in r.stdout
    assert "mode user -> unattended (pv): mode PV reads '2'" in r.stdout
    assert r.stderr == ""  # the engine is running: no warning
    data = json.loads(run("mode", "-c", cfg, "--json").stdout)
    assert data["engine_running"] is True and data["recent_changes"][0]["new"] == "unattended"


@pytest.mark.parametrize(("args", "message"), [
    (["set", "maintenence", "--for", "1h", "-r", "x"],
     "unknown mode 'maintenence' (did you mean maintenance?); modes: user, unattended, "
     "maintenance, shutdown"),
    (["set", "shutdown", "--for", "1h"], "a mode override needs a reason"),
    (["set", "shutdown", "-r", "x"], "nothing here lasts for ever"),
    (["set", "shutdown", "-r", "x", "--for", "1h", "--until", "23:00"], "not both"),
])
def test_mode_errors_are_one_line(run, cfg, args, message):
    one_line_error(run("mode", *args[:2], "-c", cfg, *args[2:]), message)


def test_mode_without_a_config_says_so(run):
    one_line_error(run("mode"), "missing option --config / -c")
    one_line_error(run("mode", "clear"), "missing option --config / -c")


@pytest.mark.parametrize("args", [
    ["--help"], ["silence", "--help"], ["silences", "--help"], ["unsilence", "--help"],
    ["mode", "--help"], ["mode", "set", "--help"], ["mode", "clear", "--help"],
])
def test_help_everywhere(run, args):
    r = run(*args)
    assert r.exit_code == 0 and "Usage:" in r.stdout


def test_help_lists_the_commands(run):
    out = run("--help").stdout
    assert all(c in out for c in ("silence", "silences", "unsilence", "mode"))
    out = run("mode", "--help").stdout
    assert "set" in out and "clear" in out
