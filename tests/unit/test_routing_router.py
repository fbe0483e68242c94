"""The route walk: matching, first-match/continue, receivers, dedupe, explanations."""

from __future__ import annotations

import textwrap
from datetime import datetime

import pytest

from beamwatch.config import parse_config
from beamwatch.model import Severity
from beamwatch.routing import Router, UnknownCheck

CONFIG = textwrap.dedent("""\
    beamline: I04
    timezone: Europe/London
    checks:
      - {id: ring-current, pv: "SR:1", group: machine}
      - {id: fe-vacuum, pv: "FE:1", group: vacuum, labels: {area: fe}}
      - {id: cryo-temp, pv: "CR:1", group: cryo}
      - {id: dcm-temp, pv: "DCM:1", group: optics, labels: {area: hutch}}
    people:
      ana: {email: ana@x.org, slack: U01, signal: "+441111111111", order: [signal, email]}
      ben: {email: ben@x.org, slack: U02}
      carl: {email: carl@x.org, whatsapp: "+12125550100"}
    teams:
      mx: {members: [ana, ben], rota: {every: 1w, start: 2026-01-05T09:00, order: [ana, ben]}}
      vac: {members: [ben, carl]}
    channels:
      ops: {url: "json://localhost/ops"}
      pager: {kind: webhook, webhook_url: "https://pager.example.org/hook"}
      mail: {kind: email, smtp_host: smtp.example.org, sender: beamwatch@example.org}
      slack: {kind: slack, token: xoxb-test, channel: "#ops"}
      signal: {url: "signal://localhost:8080/+441234567890"}
      whatsapp: {url: "whatsapp://abcdefTOKEN123@1234567890/"}
    routes:
      - match: {check: ring-current}
        to: [channel:ops]
      - match: {severity: major, group: [vacuum, cryo]}
        modes: [unattended]
        to: [oncall:mx, channel:pager]
        repeat: 1h
        continue: true
      - match: {labels: {area: fe}, severity: minor}
        to: [team:vac]
        continue: true
      - match: {severity: invalid}
        to: [person:ben]
        send_resolved: false
      - to: [channel:ops]
    """)

DAY = datetime.fromisoformat("2026-03-25T14:00:00+00:00").timestamp()  # ben's rota week


@pytest.fixture(scope="module")
def router():
    return Router(parse_config(CONFIG, env={}))


@pytest.mark.parametrize("check, severity, mode, matched", [
    ("ring-current", "major", "user", [0]),  # first match wins
    ("ring-current", "minor", "unattended", [0]),
    ("ring-current", "invalid", "unattended", [0]),  # not routes[3]: routes[0] stopped it
    ("fe-vacuum", "major", "unattended", [1, 2, 4]),  # continue, continue, catch-all
    ("fe-vacuum", "major", "user", [2, 4]),  # routes[1] is for unattended only
    ("fe-vacuum", "minor", "unattended", [2, 4]),  # routes[1] needs major and worse
    ("cryo-temp", "invalid", "unattended", [1, 3]),  # invalid is worse than major
    ("cryo-temp", "minor", "unattended", [4]),
    ("dcm-temp", "invalid", "user", [3]),
    ("dcm-temp", "minor", "maintenance", [4]),
    ("dcm-temp", "ok", "user", []),  # OK never matches
    ("ring-current", "ok", "user", []),
])
def test_which_routes_match(router, check, severity, mode, matched):
    result = router.route(check, severity, DAY, mode)
    assert list(result.matched) == matched
    assert result.route == (matched[0] if matched else None)


def test_match_check_accepts_a_list_and_labels_see_builtins():
    cfg = parse_config(CONFIG.split("routes:")[0] + textwrap.dedent("""\
        routes:
          - match: {check: [fe-vacuum, cryo-temp], labels: {mode: shutdown}}
            to: [person:carl]
          - match: {labels: {group: optics}}
            to: [person:ana]
        """), env={})
    r = Router(cfg)
    assert r.route("cryo-temp", "minor", DAY, "shutdown").matched == (0,)
    assert r.route("cryo-temp", "minor", DAY, "user").matched == ()
    assert r.route("dcm-temp", "minor", DAY, "user").matched == (1,)
    assert r.route("ring-current", "major", DAY, "shutdown").matched == ()


def test_steps_explain_why_each_route_did_or_did_not_match(router):
    result = router.route("fe-vacuum", Severity.MAJOR, DAY, "user")
    assert [(s.index, s.tried, s.matched) for s in result.steps] == [
        (0, True, False), (1, True, False), (2, True, True), (3, True, False), (4, True, True)]
    why = [s.why for s in result.steps]
    assert why[0] == "check 'fe-vacuum' is not ring-current"
    assert why[1] == "mode user is not unattended"
    assert why[2] == ("severity MAJOR >= minor, area=fe; continue: true, so later routes are "
                      "tried too")
    assert why[3] == "severity MAJOR is below invalid"
    assert why[4] == "matches every alarm; first match without continue: stops here"
    stopped = router.route("ring-current", "major", DAY, "user").steps
    assert stopped[1].why == "not tried: routes[0] matched without continue"
    assert not stopped[1].tried


def test_group_and_label_mismatch_wording(router):
    steps = router.route("dcm-temp", "major", DAY, "unattended").steps
    assert steps[1].why == "group 'optics' is not vacuum or cryo"
    assert steps[2].why == "label area is 'hutch', not 'fe'"


def test_receivers_are_expanded_and_deduplicated(router):
    result = router.route("fe-vacuum", "major", DAY, "unattended")
    assert result.names == ["person:ben", "channel:pager", "person:carl", "channel:ops"]
    ben = result.recipient("ben")
    assert ben.via == ("routes[1] oncall:mx", "routes[2] team:vac")  # one recipient, two rules
    assert ben.routes == (1, 2) and ben.route == 1
    assert ben.destinations == ("slack", "email")  # the default order
    assert ben.repeat == 3600  # the shortest repeat of the routes that named him
    assert ben.notifier_names == ("person:ben/slack", "person:ben/email")
    carl = result.recipient("carl")
    assert carl.destinations == ("whatsapp", "email") and carl.repeat is None
    pager = result.recipient("pager", "channel")
    assert pager.destinations == ("webhook",) and pager.notifier_names == ("channel:pager",)
    assert result.recipient("ops", "channel").destinations == ("apprise",)
    assert "oncall:mx: ben is on call (rota shift 11" in result.notes[0]


def test_a_person_order_is_kept(router):
    week_of_ana = datetime.fromisoformat("2026-03-31T12:00:00+00:00").timestamp()
    ana = router.route("cryo-temp", "major", week_of_ana, "unattended").recipient("ana")
    assert ana.destinations == ("signal", "email")


def test_oncall_with_nobody_on_call_tells_the_whole_team(router):
    before_rota = datetime.fromisoformat("2025-12-01T12:00:00+00:00").timestamp()
    result = router.route("cryo-temp", "major", before_rota, "unattended")
    assert result.names == ["person:ana", "person:ben", "channel:pager", "channel:ops"]
    assert result.recipient("ana").via == ("routes[1] oncall:mx (nobody on call: whole team)",)
    assert any("told every member of mx instead" in n for n in result.notes)


def test_unknown_mode_means_the_default_mode(router):
    result = router.route("fe-vacuum", "major", DAY)
    assert result.mode == "user" and result.matched == (2, 4)
    assert "mode not given: routed as the default mode 'user'" in result.notes


def test_resolved_notices_walk_the_same_routes_but_respect_send_resolved(router):
    alarm = router.route("cryo-temp", "invalid", DAY, "unattended")
    assert alarm.names == ["person:ben", "channel:pager"]
    resolved = router.route("cryo-temp", "invalid", DAY, "unattended", resolved=True)
    assert resolved.matched == (1, 3)  # routes[3] still stops the walk: no catch-all
    assert resolved.names == ["person:ben", "channel:pager"]
    assert resolved.recipient("ben").routes == (1,)  # not via routes[3]
    assert "send_resolved: false, so its receivers are not told" in resolved.steps[3].why
    only3 = router.route("dcm-temp", "invalid", DAY, "user", resolved=True)
    assert only3.matched == (3,) and only3.recipients == ()


def test_ok_matches_nothing_and_says_so(router):
    result = router.route("ring-current", "ok", DAY, "user")
    assert result.recipients == () and result.steps[0].why == "severity OK is not an alarm"
    assert any("OK is not an alarm" in n for n in result.notes)


def test_unknown_check(router):
    with pytest.raises(UnknownCheck) as info:
        router.route("nope", "major", DAY)
    assert str(info.value).startswith("unknown check 'nope' (checks: ring-current, fe-vacuum, "
                                      "cryo-temp, dcm-temp, beamwatch.store, ")


def test_no_routes_at_all():
    cfg = parse_config(CONFIG.split("routes:")[0], env={})
    result = Router(cfg).route("fe-vacuum", "major", DAY, "user")
    assert result.recipients == () and result.matched == ()
    assert "no route matched" in result.explain()
    assert "told: nobody" in result.explain()


def test_explanation_reads_like_amtool(router):
    lines = router.route("fe-vacuum", "major", DAY, "unattended").explain()
    assert lines[0] == ("check fe-vacuum (group vacuum), MAJOR, mode unattended, "
                        "at 2026-03-25 14:00 GMT")
    assert "decided by routes[1] (then routes[2], routes[4])" in lines
    assert "  person ben: slack, email  <- routes[1] oncall:mx; routes[2] team:vac" in lines
    assert "  channel ops: apprise  <- routes[4] channel:ops" in lines


def test_to_json_is_plain_data(router):
    import json

    data = json.loads(json.dumps(router.route("fe-vacuum", "major", DAY, "unattended").to_json()))
    assert data["route"] == 1 and data["severity"] == "MAJOR"
    assert data["at"] == "2026-03-25T14:00:00+00:00"
    assert data["recipients"][0] == {
        "name": "ben", "kind": "person", "destinations": ["slack", "email"],
        "via": ["routes[1] oncall:mx", "routes[2] team:vac"], "routes": [1, 2],
        "subscription": False, "quiet": False, "note": "", "repeat": 3600.0}
