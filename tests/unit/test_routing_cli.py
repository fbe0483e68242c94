"""`beamwatch route` and `beamwatch oncall` through typer, with the real router."""

from __future__ import annotations

import json
import textwrap

import pytest
import typer
from typer.testing import CliRunner

from beamwatch.cli.routing import register

CONFIG = textwrap.dedent("""\
    beamline: I04
    timezone: Europe/London
    modes: {names: [user, unattended, shutdown], default: user}
    checks:
      - {id: fe-vacuum, pv: "FE:1", group: vacuum}
      - {id: dcm-temp, pv: "DCM:1", group: optics}
    people:
      ana: {email: ana@example.org, signal: "+441111111111", order: [signal, email],
            quiet_hours: {start: "22:00", end: "07:00", channels: [signal]}}
      ben: {email: ben@example.org, slack: U02}
      carl: {email: carl@example.org}
    teams:
      mx:
        members: [ana, ben]
        rota: {every: 1w, start: 2026-01-05T09:00, order: [ana, ben]}
        overrides: [{person: carl, start: 2026-03-27T18:00, end: 2026-03-30T09:00}]
      cal: {members: [ana, ben], ical: oncall.ics}
    channels:
      ops: {url: "json://localhost/ops"}
      mail: {kind: email, smtp_host: smtp.example.org, sender: beamwatch@example.org}
      slack: {kind: slack, token: xoxb-test, channel: "#ops"}
      signal: {url: "signal://localhost:8080/+441234567890"}
    routes:
      - match: {severity: major, group: vacuum}
        modes: [unattended]
        to: [oncall:mx, channel:ops]
        repeat: 1h
        escalate: {after: 15m, to: [team:mx]}
      - to: [channel:ops]
    """)

ICS = textwrap.dedent("""\
    BEGIN:VCALENDAR
    VERSION:2.0
    PRODID:-//t//EN
    BEGIN:VEVENT
    UID:1
    DTSTART;TZID=Europe/London:20260105T090000
    DTEND;TZID=Europe/London:20260112T090000
    RRULE:FREQ=WEEKLY
    SUMMARY:ben
    END:VEVENT
    END:VCALENDAR
    """)


@pytest.fixture()
def cli(tmp_path):
    (tmp_path / "i04.yaml").write_text(CONFIG)
    (tmp_path / "oncall.ics").write_text(ICS)
    app = typer.Typer()

    @app.callback()
    def _main() -> None:
        pass

    register(app)
    runner = CliRunner()

    def run(*args: str):
        return runner.invoke(app, [args[0], "-c", str(tmp_path / "i04.yaml"), *args[1:]])

    run.path = tmp_path
    run.app = app
    return run


def test_route_prints_the_rule_the_recipients_and_the_escalation(cli):
    res = cli("route", "--check", "fe-vacuum", "--severity", "major", "--mode", "unattended",
              "--at", "2026-03-29T03:00")
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    assert lines[0] == ("check fe-vacuum (group vacuum), MAJOR, mode unattended, at "
                        "2026-03-29 03:00 BST")
    assert ("  routes[0] MATCH group vacuum, severity MAJOR >= major, mode unattended; first "
            "match without continue: stops here") in lines
    assert "  routes[1] -     not tried: routes[0] matched without continue" in lines
    assert "decided by routes[0]" in lines
    assert "  person carl: email  <- routes[0] oncall:mx" in lines
    assert "  channel ops: apprise  <- routes[0] channel:ops" in lines
    assert "repeats while unacknowledged: channel:ops every 1h, person:carl every 1h" in lines
    # at 03:15 ana is in quiet hours: the MAJOR reaches her on signal only
    assert ("escalation: after 15m (2026-03-29 03:15 BST), routes[0] level 1 team:mx -> "
            "person:ana (signal), person:ben (slack, email)") in lines
    assert lines[-1].startswith("escalation:")


def test_route_without_mode_uses_the_default_mode(cli):
    res = cli("route", "--check", "dcm-temp", "--severity", "minor", "--at", "2026-03-29T03:00")
    assert res.exit_code == 0, res.output
    assert "note: mode not given: routed as the default mode 'user'" in res.stdout


def test_route_json(cli):
    res = cli("route", "--check", "fe-vacuum", "--severity", "minor", "--at",
              "2026-03-25T12:00:00Z", "--json")
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["route"] == 1 and data["mode"] == "user" and data["severity"] == "MINOR"
    assert data["at"] == "2026-03-25T12:00:00+00:00"
    assert [r["name"] for r in data["recipients"]] == ["ops"]
    assert data["escalations"] == []
    assert [s["matched"] for s in data["steps"]] == [False, True]


@pytest.mark.parametrize("args, message", [
    (["--check", "nope"],
     "beamwatch: unknown check 'nope' (checks: fe-vacuum, dcm-temp, beamwatch.store"),
    (["--check", "fe-vacuum", "--severity", "loud"],
     "beamwatch: --severity: 'loud' is not one of minor, major, invalid, ok"),
    (["--check", "fe-vacuum", "--mode", "beamtime"],
     "beamwatch: --mode: unknown mode 'beamtime' (modes: user, unattended, shutdown)"),
    (["--check", "fe-vacuum", "--at", "tomorrow"], "beamwatch: --at: 'tomorrow' is not a time"),
])
def test_route_bad_input_exits_2_with_one_line(cli, args, message):
    res = cli("route", *args)
    assert res.exit_code == 2
    assert res.stderr.startswith(message)
    assert len(res.stderr.strip().splitlines()) == 1


def test_a_config_error_prints_file_line_col_and_exits_2(cli):
    bad = cli.path / "bad.yaml"
    bad.write_text(CONFIG.replace("    repeat: 1h\n", "    repeat: 1h\n    colour: red\n"))
    res = CliRunner().invoke(cli.app, ["route", "-c", str(bad), "--check", "fe-vacuum"])
    assert res.exit_code == 2
    assert res.stderr.strip() == f"{bad}:28:5: routes[0].colour: unknown key"
    res = CliRunner().invoke(cli.app, ["oncall", "-c", str(cli.path / "missing.yaml")])
    assert res.exit_code == 2 and "cannot read the file" in res.stderr


def test_oncall_text(cli):
    res = cli("oncall", "--at", "2026-03-29T12:00", "--next", "2")
    assert res.exit_code == 0, res.output
    assert res.stdout.splitlines() == [
        "on call at 2026-03-29 12:00 BST (Europe/London)",
        "mx: carl (override, since 2026-03-27 18:00 GMT, until 2026-03-30 09:00 BST)",
        "  why: overrides[0], 2026-03-27 18:00 GMT → 2026-03-30 09:00 BST",
        "  then ana from 2026-03-30 09:00 BST (rota)",
        "  then ben from 2026-04-06 09:00 BST (rota)",
        "cal: ben (ical, since 2026-03-23 09:00 GMT, no change within 62d)",
        "  why: calendar event 'ben' (SUMMARY), 2026-03-23 09:00 GMT → 2026-03-30 09:00 BST",
    ]


def test_oncall_json_for_one_team(cli):
    res = cli("oncall", "--team", "mx", "--at", "2026-01-05T09:00", "--json")
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["timezone"] == "Europe/London"
    [mx] = data["teams"]
    assert (mx["team"], mx["person"], mx["source"]) == ("mx", "ana", "rota")
    assert mx["until"] == "2026-01-12T09:00:00+00:00"
    assert [n["person"] for n in mx["next"]] == ["ben", "ana", "ben"]


def test_oncall_unknown_team(cli):
    res = cli("oncall", "--team", "nope")
    assert res.exit_code == 2
    assert res.stderr.strip() == "beamwatch: --team: unknown team 'nope' (teams: mx, cal)"


def test_a_missing_calendar_is_a_warning_not_an_error(cli):
    (cli.path / "oncall.ics").unlink()
    res = cli("oncall", "--team", "cal", "--at", "2026-03-29T12:00")
    assert res.exit_code == 0
    assert "beamwatch: warning: team cal: cannot read oncall.ics" in res.stderr
    assert "cal: NOBODY" in res.stdout
