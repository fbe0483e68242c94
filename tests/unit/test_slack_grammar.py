"""What people type to the bot: every command's grammar, Slack's markup, and help for
malformed input (never an exception that reaches Slack)."""

from __future__ import annotations

import pytest

from beamwatch.slack.grammar import COMMANDS, Malformed, Request, clean, help_text, parse


@pytest.mark.parametrize("text, verb, args", [
    ("", "help", {}),
    ("status", "status", {"group": None}),
    ("STATUS vacuum", "status", {"group": "vacuum"}),
    ("get BL04I-EA-DET-01:TEMP", "get", {"name": "BL04I-EA-DET-01:TEMP"}),
    ("history dcm-temp", "history", {"check": "dcm-temp", "since": 86400.0}),
    ("history dcm-temp 6h", "history", {"check": "dcm-temp", "since": 21600.0}),
    ("ack fe-vacuum", "ack", {"target": "fe-vacuum"}),
    ("silence fe-vacuum 2h replacing the gauge", "silence",
     {"matchers": ["fe-vacuum"], "duration": "2h", "reason": "replacing the gauge"}),
    ("silence group=vacuum severity=minor for 1h30m bake-out", "silence",
     {"matchers": ["group=vacuum", "severity=minor"], "duration": "1h30m",
      "reason": "bake-out"}),
    ('silence check=~"fe-.*" 30m "FE work"', "silence",
     {"matchers": ["check=~fe-.*"], "duration": "30m", "reason": "FE work"}),
    ("unsilence 12", "unsilence", {"id": "12"}),
    ("mode", "mode", {}),
    ("mode set maintenance for 4h vacuum intervention", "mode set",
     {"mode": "maintenance", "for": "4h", "until": None, "reason": "vacuum intervention"}),
    ("mode set shutdown until 18:00 end of run", "mode set",
     {"mode": "shutdown", "for": None, "until": "18:00", "reason": "end of run"}),
    ("mode set user back to users", "mode set",
     {"mode": "user", "for": None, "until": None, "reason": "back to users"}),
    ("mode clear", "mode clear", {}),
    ("oncall", "oncall", {}),
    ("oncall take", "oncall take", {"team": None, "for": None, "as": None}),
    ("oncall take mx-support for 4h as ana", "oncall take",
     {"team": "mx-support", "for": "4h", "as": "ana"}),
    ("subscribe cryo", "subscribe", {"target": "cryo", "severity": "minor"}),
    ("subscribe cryo MAJOR", "subscribe", {"target": "cryo", "severity": "major"}),
    ("unsubscribe all", "unsubscribe", {"target": "all"}),
    ("quiet 22:00-07:00", "quiet", {"hours": "22:00-07:00"}),
    ("quiet 22:00 - 07:00", "quiet", {"hours": "22:00-07:00"}),
    ("quiet off", "quiet", {"hours": "off"}),
    ("help silence", "help", {"topic": "silence", "asked": "silence"}),
])
def test_each_command_parses(text, verb, args):
    assert parse(text) == Request(verb, args)


def test_slack_markup_is_taken_off_before_parsing():
    # a mention of the bot, a link Slack made of a URL-like word, escaped &, smart quotes
    assert clean("<@U0BOT> status") == "status"
    assert clean("<@U0BOT|beamwatch>: get <http://fe.vac|fe.vac>") == "get fe.vac"
    assert parse("silence group=vac &amp; 2h “FE work”") == Request(
        "silence", {"matchers": ["group=vac", "&"], "duration": "2h", "reason": "FE work"})


@pytest.mark.parametrize("text, verb, says", [
    ("silence fe-vacuum replacing the gauge", "silence", "for how long"),
    ("silence 2h replacing the gauge", "silence", "what to silence"),
    ("silence fe-vacuum 2h", "silence", "needs a reason"),
    ("mode set maintenance", "mode set", "needs a reason"),
    ("mode set maintenance for ages because", "mode set", "not a duration"),
    ("mode sett x", "mode", "did you mean"),
    ("history", "history", "takes a check"),
    ("history dcm-temp forever", "history", "not a duration"),
    ("ack", "ack", "one target"),
    ("subscribe cryo loud", "subscribe", "not a severity"),
    ("quiet sometimes at night", "quiet", "HH:MM-HH:MM"),
    ("incidents now", "incidents", "takes nothing"),
    ("oncall take a b c", "oncall take", "not understood"),
])
def test_malformed_input_names_the_command_whose_help_to_show(text, verb, says):
    with pytest.raises(Malformed) as e:
        parse(text)
    assert e.value.verb == verb
    assert says in e.value.message


def test_an_unknown_command_gets_the_whole_help():
    with pytest.raises(Malformed) as e:
        parse("reboot the beamline")
    assert e.value.verb is None and "reboot" in e.value.message
    assert all(spec.usage in help_text() for spec in COMMANDS.values())


def test_an_unbalanced_quote_is_read_as_plain_words():
    assert parse('silence fe-vacuum 2h "gauge').args["reason"] == '"gauge'


def test_a_huge_message_is_refused_not_parsed():
    with pytest.raises(Malformed, match="at most"):
        parse("status " + "x" * 5000)
