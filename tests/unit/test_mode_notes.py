"""Mode changes announced: which routes take them, the rows and messages they become,
and the config errors for alarm-only keys on a `kind: mode` route."""

from __future__ import annotations

import json
import textwrap
from datetime import datetime

import pytest

from beamwatch.config import ConfigError, parse_config
from beamwatch.engine.modes import ModeChange, ModeProblem, ModeSource, ModeTracker
from beamwatch.model import Severity
from beamwatch.notify.base import Message
from beamwatch.notify.render import Renderer
from beamwatch.notify.webhook import webhook_body
from beamwatch.paging.mode_notes import ModeNotes
from beamwatch.routing import Router

CONFIG = textwrap.dedent("""\
    beamline: I04
    timezone: Europe/London
    modes: {names: [user, unattended, maintenance, shutdown], default: user}
    checks:
      - {id: fe-vacuum, pv: "FE:1", group: vacuum}
    people:
      ana: {email: ana@x.org, slack: U01, order: [slack, email],
            quiet_hours: {start: "22:00", end: "07:00"}}
      ben: {email: ben@x.org}
    teams:
      mx: {members: [ana, ben], rota: {every: 1w, start: 2026-01-05T09:00, order: [ana, ben]}}
    channels:
      ops: {kind: webhook, webhook_url: "https://ops.example.org/hook"}
      pager: {kind: webhook, webhook_url: "https://pager.example.org/hook", expire: 10m}
      mail: {kind: email, smtp_host: smtp.example.org, sender: beamwatch@example.org}
      slack: {kind: slack, token: xoxb-test, channel: "#ops"}
    routes:
      - match: {severity: major}
        to: [channel:pager]
      - match: {kind: mode}
        modes: [shutdown, maintenance]
        to: [oncall:mx]
        continue: true
      - match: {kind: mode}
        to: [channel:ops]
      - to: [channel:pager]
    """)

DAY = datetime.fromisoformat("2026-01-07T14:00:00+00:00").timestamp()  # ana's rota week
NIGHT = datetime.fromisoformat("2026-01-07T23:30:00+00:00").timestamp()


@pytest.fixture(scope="module")
def config():
    return parse_config(CONFIG, env={})


@pytest.fixture(scope="module")
def router(config):
    return Router(config)


def tracker(config) -> ModeTracker:
    return ModeTracker.from_config(config.modes, now=DAY)


def test_a_mode_change_walks_only_the_mode_routes(router):
    result = router.route_mode("user", "shutdown", DAY)
    assert result.matched == (1, 2)
    assert result.names == ["person:ana", "channel:ops"]
    assert result.kind == "mode" and result.previous_mode == "user"
    steps = {s.index: s for s in result.steps}
    assert not steps[0].tried and not steps[3].tried  # alarm routes, the catch-all too
    assert "kind alarm" in steps[3].why


def test_modes_on_a_mode_route_are_the_modes_changed_into(router):
    result = router.route_mode("shutdown", "user", DAY)
    assert result.matched == (2,)
    assert result.names == ["channel:ops"]
    assert "changes into shutdown or maintenance only, not user" in result.explanation


def test_alarms_never_take_a_mode_route(router):
    result = router.route("fe-vacuum", Severity.MINOR, DAY, "user")
    assert result.matched == (3,)  # the catch-all: routes[1] and [2] are for mode changes
    assert "kind mode" in result.steps[1].why


def test_quiet_hours_hold_a_mode_change_like_a_minor(router):
    result = router.route_mode("user", "shutdown", NIGHT)
    assert "person:ana" not in result.names
    [held] = result.held
    assert held.name == "ana" and "only MAJOR and worse" in held.why
    assert "channel:ops" in result.names  # channels have no quiet hours


def test_no_route_asks_for_mode_changes_so_nobody_is_told():
    cfg = parse_config(CONFIG.split("routes:")[0] + "routes:\n  - to: [channel:ops]\n",
                       env={})
    result = Router(cfg).route_mode("user", "shutdown", DAY)
    assert result.recipients == () and result.matched == ()


def test_one_row_per_recipient_with_the_whole_story(config, router):
    modes = tracker(config)
    records = modes.set_override("maintenance", author="ana", reason="vacuum intervention",
                                 now=DAY, until=DAY + 8 * 3600)
    rows = ModeNotes().rows(records, router, config, modes, DAY)
    assert [(r["kind"], r["receiver"], r["destination"]) for r in rows] == [
        ("mode", "person:ana", "person:ana/slack"), ("mode", "channel:ops", "channel:ops")]
    assert rows[0]["dedup_key"] == f"mode/{DAY:.3f}/maintenance/person:ana/slack"
    assert rows[0]["message"]["fallbacks"] == ["person:ana/email"]
    message = Message.from_dict(rows[0]["message"])
    assert (message.kind, message.previous_mode, message.mode) == ("mode", "user", "maintenance")
    assert (message.mode_source, message.actor, message.text) == (
        "override", "ana", "vacuum intervention")
    assert message.until == DAY + 8 * 3600


def test_only_real_changes_are_news(config, router):
    notes = ModeNotes()
    same = ModeChange(DAY, "user", "user", ModeSource.OVERRIDE, "ana", "pin it")
    problem = ModeProblem(DAY, "garbage", "user", "mode PV value 'garbage' names no mode")
    assert notes.rows([same, problem], router, config, tracker(config), DAY) == []


def test_the_change_last_announced_is_not_announced_again(config, router):
    """After a restart the tracker re-derives the PV's mode from the default: that
    'change' into the mode already announced is not news."""
    notes = ModeNotes()
    notes.last = "shutdown"  # as `resume` finds it in the store
    again = ModeChange(DAY + 60, "user", "shutdown", ModeSource.PV, None, "mode PV reads '4'")
    assert notes.rows([again], router, config, tracker(config), DAY + 60) == []
    back = ModeChange(DAY + 120, "shutdown", "user", ModeSource.PV, None, "mode PV reads '1'")
    assert [r["receiver"] for r in notes.rows([back], router, config, tracker(config),
                                              DAY + 120)] == ["channel:ops"]


@pytest.mark.parametrize("fmt", ["subject", "text", "html", "mrkdwn"])
def test_every_format_says_old_new_source_author_reason_and_until(config, router, fmt):
    modes = tracker(config)
    records = modes.set_override("maintenance", author="ana", reason="vacuum <work>",
                                 now=DAY, until=DAY + 8 * 3600)
    [row, _] = ModeNotes().rows(records, router, config, modes, DAY)
    text = Renderer().render(fmt, Message.from_dict(row["message"]))
    assert "user" in text and "maintenance" in text and "ana" in text
    if fmt != "subject":
        assert "vacuum" in text and ("22:00" in text or "until" in text.lower())


def test_webhook_body_has_the_mode_change(config, router):
    modes = tracker(config)
    records = modes.set_override("shutdown", author="ana", reason="winter", now=DAY,
                                 until=DAY + 3600)
    rows = ModeNotes().rows(records, router, config, modes, DAY)
    body = webhook_body(Message.from_dict(rows[-1]["message"]), Renderer())
    assert body["kind"] == "mode" and body["mode"] == "shutdown"
    assert body["mode_change"] == {"from": "user", "to": "shutdown", "source": "override",
                                   "author": "ana", "reason": "winter",
                                   "until": "2026-01-07T15:00:00.000Z"}
    blocks = Renderer().blocks(Message.from_dict(rows[-1]["message"]))
    assert any("winter" in str(b) for b in blocks)


def test_alarm_keys_on_a_mode_route_are_errors_all_at_once(tmp_path):
    path = tmp_path / "bw.yaml"
    path.write_text(CONFIG.replace(
        "  - match: {kind: mode}\n    to: [channel:ops]\n",
        "  - match: {kind: mode, group: vacuum, labels: {area: fe}}\n"
        "    to: [channel:ops]\n    escalate: {after: 5m, to: [person:ben]}\n"
        "    send_resolved: false\n"))
    from beamwatch.config import load_config

    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert [i.path for i in info.value.issues] == [
        "routes[2].match.group", "routes[2].match.labels", "routes[2].escalate",
        "routes[2].send_resolved"]
    assert all(str(i).startswith(f"{path}:") for i in info.value.issues)


def test_the_route_command_shows_who_hears_of_a_mode_change(tmp_path):
    import typer
    from typer.testing import CliRunner

    from beamwatch.cli.routing import register

    (tmp_path / "bw.yaml").write_text(CONFIG)
    app = typer.Typer()
    app.callback()(lambda: None)
    register(app)

    def run(*args: str):
        return CliRunner().invoke(app, ["route", "-c", str(tmp_path / "bw.yaml"), *args])

    shown = run("--mode-change", "shutdown", "--from", "user", "--at", "2026-01-07T14:00")
    assert shown.exit_code == 0, shown.output
    assert shown.output.splitlines()[0].startswith("mode change user -> shutdown, at ")
    assert "  person ana: slack, email  <- routes[1] oncall:mx" in shown.output
    assert "  channel ops: webhook  <- routes[2] channel:ops" in shown.output
    data = json.loads(run("--mode-change", "user", "--json").output)
    assert data["kind"] == "mode" and [r["name"] for r in data["recipients"]] == ["ops"]
    wrong = run("--mode-change", "holiday")
    assert wrong.exit_code == 2 and "--mode-change: unknown mode 'holiday'" in wrong.output
    assert run().exit_code == 2  # neither --check nor --mode-change
