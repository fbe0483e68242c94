"""The bot's commands on a real (SQLite) store, without Slack: who may do what (every
role x every write command), that a refusal changes nothing and is audited, and that
what chat changes is what the CLI and the engine see."""

from __future__ import annotations

import asyncio

import pytest

from beamwatch.api import audit, people
from beamwatch.api import service as service_api
from beamwatch.api.noise import parse_matchers
from beamwatch.config import parse_config
from beamwatch.model import AlarmState, Severity
from beamwatch.routing.oncall import OnCallResolver
from beamwatch.slack.commands import Caller, Commands, Reading
from beamwatch.slack.grammar import parse
from beamwatch.slack.roles import OPERATOR_VERBS, Role, Roles, operators, refusal
from beamwatch.store import Store
from beamwatch.store.noise import NoiseStore
from beamwatch.store.overlays import OverlayStore

NOW = 1_790_000_000.0

CONFIG = """
beamline: I04
timezone: Europe/London
storage: {url: "sqlite:///%s"}
modes: {names: [user, unattended, maintenance, shutdown], default: user}
slack:
  mode: http
  bot_token: xoxb-test
  signing_secret: s3cret
  roles: {admin: [U0ADM], operator: ["@mx-ops", U0OPS], viewer: [U0VIEW, U0ANA, U0BEN]}
checks:
  - {id: fe-vacuum, pv: "FE:1", group: vacuum, above: {major: 1e-7}}
  - {id: dcm-temp, pv: "DCM:1", group: optics, above: {minor: 120, major: 140}}
  - {id: cryo-temp, pv: "CRYO:1", group: cryo, above: {major: 110}}
people:
  ana: {slack: U0ANA}
  ben: {slack: U0BEN,
        subscriptions: [{groups: [optics], severity: major}]}
  adm: {slack: U0ADM}
channels:
  slack: {kind: slack, token: xoxb-test, channel: "#i04-alarms", people: true}
teams:
  mx-support:
    members: [ana, ben]
    rota: {start: "2026-01-05T09:00", every: 7d, order: [ben, ana]}
routes:
  - to: [team:mx-support]
"""


@pytest.fixture()
def env(tmp_path):
    cfg = parse_config(CONFIG % (tmp_path / "bw.db"))
    store = Store(cfg.storage.url)
    # fe-vacuum in alarm (something to ack), a mode override (something to clear)
    store.save_states([AlarmState("fe-vacuum", Severity.MAJOR, Severity.MAJOR, since=NOW - 60)])
    NoiseStore(store).set_override("maintenance", author="x", reason="y", until=NOW + 3600,
                                   now=NOW - 60)

    async def read_now(name: str) -> Reading:
        if name == "FE:1":
            return Reading("FE:1", "3e-08", "mbar", "OK", NOW - 2, "read now (Channel Access)")
        raise LookupError(f"'{name}' is neither a check nor a PV name")

    yield cfg, store, Commands(lambda: cfg, store, read_now, clock=lambda: NOW)
    store.close()


def caller(user: str, role: Role, person: str | None = None) -> Caller:
    return Caller(user, user.lower(), person, role)


def run(commands: Commands, text: str, who: Caller):
    return asyncio.run(commands.run(parse(text), who))


WRITES = {  # every command that changes something, and who may
    "ack fe-vacuum": Role.OPERATOR,
    "silence fe-vacuum 2h replacing the gauge": Role.OPERATOR,
    "unsilence 1": Role.OPERATOR,
    "mode set maintenance for 2h vacuum work": Role.OPERATOR,
    "mode clear": Role.OPERATOR,
    "subscribe cryo major": Role.VIEWER,
    "unsubscribe optics": Role.VIEWER,
    "quiet 22:00-07:00": Role.VIEWER,
    "oncall take for 4h": Role.VIEWER,
}


def snapshot(store: Store) -> tuple:
    noise = NoiseStore(store)
    return (tuple((s.id, s.end) for s in noise.silences(since=None)),
            tuple((o.id, o.end) for o in noise.overrides()),
            len(store.queued_commands()), len(OverlayStore(store).active()))


@pytest.mark.parametrize("role", list(Role))
@pytest.mark.parametrize("text", list(WRITES))
def test_every_write_command_needs_its_role_and_a_refusal_changes_nothing(env, role, text):
    cfg, store, commands = env
    NoiseStore(store).add_silence(  # something to unsilence, made by someone else
        parse_matchers(cfg, ["dcm-temp"]), start=NOW, end=NOW + 3600, author="x", reason="y",
        now=NOW)
    before = snapshot(store)
    # ben is linked (self-service needs a person) and in team mx-support (oncall take)
    reply = run(commands, text, caller("U0BEN", role, "ben"))
    allowed = role >= WRITES[text]
    assert reply.ok is allowed, reply.text
    entries = audit.entries(store)
    if allowed:
        assert snapshot(store) != before
        assert entries and entries[-1].outcome in ("done", "queued")
        assert (entries[-1].actor, entries[-1].via) == ("ben", "slack")
    else:
        assert "Not done" in reply.text and "role" in reply.text
        assert snapshot(store) == before
        [entry] = entries
        assert (entry.outcome, entry.actor, entry.via) == ("refused", "ben", "slack")


@pytest.mark.parametrize("text", ["status", "get FE:1", "history dcm-temp", "incidents",
                                  "silences", "mode", "oncall", "help"])
def test_reads_are_for_viewers_and_refused_to_users_without_a_role(env, text):
    _, store, commands = env
    assert run(commands, text, caller("U0VIEW", Role.VIEWER)).ok
    nobody = run(commands, text, caller("U0WHO", Role.NONE))
    assert nobody.ok is (text == "help"), nobody.text
    if text != "help":
        assert "no beamwatch role" in nobody.text


def test_self_service_needs_a_linked_person(env):
    _, store, commands = env
    reply = run(commands, "subscribe cryo", caller("U0OPS", Role.OPERATOR, None))
    assert not reply.ok and "people.NAME.slack" in reply.text
    assert OverlayStore(store).active() == []


def test_only_an_admin_takes_on_call_for_someone_else(env):
    cfg, store, commands = env
    refused = run(commands, "oncall take for 2h as ana", caller("U0BEN", Role.OPERATOR, "ben"))
    assert not refused.ok and "only an admin" in refused.text
    done = run(commands, "oncall take mx-support for 2h as ana",
               caller("U0ADM", Role.ADMIN, "adm"))
    assert done.ok and done.public, done.text
    [who] = people.oncall(cfg, store, NOW + 60)
    assert (who.team, who.person) == ("mx-support", "ana")
    later = NOW + 3 * 3600  # the takeover is over: the rota decides again
    assert people.resolver(cfg, store).who("mx-support", later) == \
        OnCallResolver(cfg).who("mx-support", later)


def test_subscriptions_and_quiet_hours_from_chat_are_in_force_and_in_config_diff(env):
    cfg, store, commands = env
    ben = caller("U0BEN", Role.VIEWER, "ben")
    assert run(commands, "subscribe cryo major", ben).ok
    assert run(commands, "unsubscribe optics", ben).ok
    assert run(commands, "quiet 23:00-06:30", ben).ok
    effective = people.in_force(cfg, store, NOW)
    [sub] = effective.people["ben"].subscriptions
    assert (sub.groups, sub.severity) == (["cryo"], "major")
    assert effective.people["ben"].quiet_hours.start == "23:00"
    assert cfg.people["ben"].subscriptions[0].groups == ["optics"]  # the file is untouched
    lines, skipped = people.diff(cfg, store, NOW)
    assert {line.path for line in lines} == {"people.ben.subscriptions",
                                             "people.ben.quiet_hours"}
    assert skipped == []
    subs = next(line for line in lines if line.path.endswith("subscriptions"))
    assert (subs.was, subs.now) == ("group optics at major and worse",
                                    "group cryo at major and worse")
    assert run(commands, "subscriptions", ben).text.endswith("group cryo at major and worse")


def test_unsubscribing_the_last_item_does_not_turn_into_following_everything(env):
    cfg, store, commands = env
    ben = caller("U0BEN", Role.VIEWER, "ben")
    assert run(commands, "unsubscribe optics", ben).ok
    assert people.in_force(cfg, store, NOW).people["ben"].subscriptions == []
    again = run(commands, "unsubscribe optics", ben)
    assert not again.ok and "does not follow" in again.text


def test_service_errors_come_back_with_the_commands_usage(env):
    _, _, commands = env
    reply = run(commands, "silence fe-vacum 2h typo", caller("U0OPS", Role.OPERATOR))
    assert not reply.ok
    assert "did you mean fe-vacuum" in reply.text
    assert "usage: `silence" not in reply.text  # the usage is in its own context block
    assert "silence <check" in reply.blocks[-1]["elements"][0]["text"]


def test_a_silence_from_chat_is_in_the_beamline_log_with_its_author(env):
    cfg, store, commands = env
    reply = run(commands, "silence group=vacuum 2h bake-out", caller("U0OPS", Role.OPERATOR))
    assert reply.ok and reply.public and "u0ops (slack U0OPS)" in reply.text
    rows = service_api.history(store, NOW - 60)
    [row] = [r for r in rows if r["kind"] == "audit"]
    assert (row["action"], row["target"], row["actor"], row["via"]) == (
        "silence", "group=vacuum", "u0ops (slack U0OPS)", "slack")  # not a person's name
    assert "bake-out" in row["detail"]


def test_get_reads_through_the_given_reader_and_says_what_is_unknown(env):
    _, _, commands = env
    ok = run(commands, "get FE:1", caller("U0VIEW", Role.VIEWER))
    assert "FE:1" in ok.text and "3e-08" in ok.text and "mbar" in ok.text
    missing = run(commands, "get fe-vacum", caller("U0VIEW", Role.VIEWER))
    assert not missing.ok and "did you mean fe-vacuum" in missing.text


async def test_usergroup_roles_are_looked_up_cached_and_fail_closed(env):
    cfg, _, _ = env
    t = [0.0]
    calls = []

    async def members(handle: str) -> set[str]:
        calls.append(handle)
        if len(calls) > 1:
            raise RuntimeError("slack is down")
        return {"U0GRP"}

    roles = Roles(members, clock=lambda: t[0])
    assert await roles.role_of(cfg, "U0GRP") == Role.OPERATOR
    assert await roles.role_of(cfg, "U0GRP") == Role.OPERATOR and calls == ["mx-ops"]
    t[0] = 1000.0  # stale: asked again, Slack fails, the last known membership stands
    assert await roles.role_of(cfg, "U0GRP") == Role.OPERATOR and len(calls) == 2
    assert await roles.role_of(cfg, "U0ADM") == Role.ADMIN
    assert await roles.role_of(cfg, "U0STRANGER") == Role.NONE
    fresh = Roles(members)  # Slack down and nothing known: nobody is let in on a guess
    assert await fresh.role_of(cfg, "U0GRP") == Role.NONE


def test_operators_default_to_the_configured_people_with_a_slack_id(env):
    cfg, _, _ = env
    no_list = cfg.model_copy(update={"slack": cfg.slack.model_copy(update={
        "roles": cfg.slack.roles.model_copy(update={"operator": None})})})
    assert sorted(operators(no_list)) == ["U0ADM", "U0ANA", "U0BEN"]
    assert refusal("ack", Role.VIEWER, "ana") == "`ack` needs the operator role; you are a viewer"
    assert all(refusal(v, Role.OPERATOR, "ana") is None for v in OPERATOR_VERBS)


@pytest.mark.parametrize("section, says", [
    ("slack: {bot_token: x}", "mode socket needs app_token"),
    ("slack: {mode: http, bot_token: x}", "mode http needs signing_secret"),
    ("slack: {mode: http, bot_token: x, signing_secret: y}\nweb: {listen: \"off\"}",
     "needs the HTTP server"),
    ("slack: {bot_token: x, app_token: y, rolez: {}}", "rolez"),
    ("slack: {bot_token: x, app_token: y, roles: {viewer: [ana]}}", "roles.viewer"),
])
def test_a_bad_slack_section_is_a_clear_config_error(tmp_path, section, says):
    from beamwatch.config import ConfigError

    text = f"beamline: I04\nstorage: {{url: \"sqlite:///{tmp_path}/x.db\"}}\n{section}\n"
    with pytest.raises(ConfigError) as e:
        parse_config(text, "i04.yaml")
    assert says in str(e.value)
    assert str(e.value).startswith("i04.yaml:")  # file:line:col, never a traceback


def test_one_slack_user_is_one_person(tmp_path):
    from beamwatch.config import ConfigError

    text = CONFIG.replace("  adm: {slack: U0ADM}",
                          "  adm: {slack: U0ADM}\n  ana2: {slack: U0ANA}") % (tmp_path / "x.db")
    with pytest.raises(ConfigError, match="U0ANA is also people.ana.slack"):
        parse_config(text)


def test_an_admin_not_linked_to_a_person_may_act_for_one():
    assert refusal("oncall take", Role.ADMIN, None, acting_for="ana") is None
    assert "only an admin" in refusal("oncall take", Role.OPERATOR, None, acting_for="ana")


def test_alert_buttons_only_on_a_message_about_one_check():
    from dataclasses import replace

    from beamwatch.notify.render import Renderer, sample_message
    from beamwatch.notify.slack import SlackNotifier

    slack = SlackNotifier("channel:x", "xoxb-1", "#x", renderer=Renderer(None))
    slack.buttons = True
    one = sample_message("alarm")
    grouped = replace(one, check_ids=("fe-vacuum", "dcm-temp"))
    assert slack._blocks(one)[-1]["type"] == "actions"
    assert all(b["type"] != "actions" for b in slack._blocks(grouped))
    acked = slack._blocks(replace(one, kind="ack"))[-1]
    assert [e["action_id"] for e in acked["elements"]] == ["bw_history"]


async def test_a_reload_may_change_the_bots_roles_but_not_how_it_connects(tmp_path, caplog):
    # async: a reload closes the old notifiers in the background, on the running loop
    from beamwatch.app import App
    from beamwatch.sources.soft import SoftSource

    path = tmp_path / "bw.yaml"
    text = CONFIG % (tmp_path / "bw.db")
    path.write_text(text)
    app = App(path, sources={"ca": SoftSource("ca")})
    try:
        path.write_text(text.replace("mode: http", "mode: http\n  command: /bw"))
        app.reload()
        assert app.config.slack.command == "/beamwatch"
        assert "changed beyond its roles" in caplog.text
        path.write_text(text.replace("admin: [U0ADM]", "admin: [U0ADM, U0BEN]"))
        app.reload()
        assert app.config.slack.roles.admin == ["U0ADM", "U0BEN"]
    finally:
        app.store.close()
