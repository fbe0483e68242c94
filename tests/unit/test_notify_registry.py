"""How channels and people's addresses become notifiers (no network)."""

from __future__ import annotations

from typing import Any

import pytest

from beamwatch.config.schema import Config
from beamwatch.notify import (
    AppriseNotifier,
    EmailNotifier,
    NotifyConfigError,
    SlackNotifier,
    WebhookNotifier,
    build_registry,
    registry_problems,
)

SIGNAL = "signal://signal-api.example.org:8080/+441111111111"
WHATSAPP = "whatsapp://abcdefTOKEN123@1234567890/"


def config(**sections: Any) -> Config:
    return Config.model_validate({"beamline": "I04", **sections})


CHANNELS = {
    "mail": {"kind": "email", "smtp_host": "smtp.example.org", "smtp_port": 587,
             "sender": "beamwatch@example.org", "smtp_starttls": True, "to": ["ops@example.org"]},
    "ops-slack": {"kind": "slack", "token": "xoxb-registry-token", "channel": "#i04-ops",
                  "api_url": "http://slack.test/api/", "timeout": "5s"},
    "signal": {"url": SIGNAL},
    "whatsapp": {"url": WHATSAPP},
    "hook": {"kind": "webhook", "webhook_url": "https://hooks.example.org/x",
             "headers": {"Authorization": "Bearer abc12345"}},
    "ntfy": {"url": "ntfy://ntfy.example.org/i04"},
}
ANA = {"email": "ana@example.org", "slack": "U0123ABC", "signal": "+442222222222",
       "whatsapp": "+443333333333", "webhook": "https://ana.example.org/hook"}


def test_channels_map_to_notifiers() -> None:
    reg = build_registry(config(channels=CHANNELS))
    assert isinstance(reg["channel:mail"], EmailNotifier)
    assert isinstance(reg["channel:ops-slack"], SlackNotifier)
    assert isinstance(reg["channel:signal"], AppriseNotifier)
    assert isinstance(reg["channel:whatsapp"], AppriseNotifier)
    assert isinstance(reg["channel:hook"], WebhookNotifier)
    assert isinstance(reg["channel:ntfy"], AppriseNotifier)
    assert reg.channel("ops-slack").destination == "Slack #i04-ops"
    assert reg["channel:hook"].destination == "webhook https://hooks.example.org"
    assert reg["channel:ops-slack"].timeout == 5.0


def test_apprise_slack_bot_url_becomes_a_native_slack_notifier() -> None:
    reg = build_registry(config(channels={
        "ops": {"url": "slack://xoxb-1234-5678-abcdefSECRET/#i04-ops"},
        "legacy": {"url": "slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ/#general"},
    }))
    ops = reg["channel:ops"]
    assert isinstance(ops, SlackNotifier) and ops.channel == "#i04-ops"
    assert isinstance(reg["channel:legacy"], AppriseNotifier)  # webhook mode: no chat.update


def test_each_person_kind_uses_its_people_channel() -> None:
    reg = build_registry(config(channels=CHANNELS, people={"ana": ANA}))
    email, slack, signal, whatsapp, webhook = reg.person("ana")
    assert isinstance(email, EmailNotifier) and email.name == "person:ana/email"
    assert email.to == ["ana@example.org"]
    assert (email.smtp.host, email.smtp.port, email.smtp.starttls, email.smtp.sender) == (
        "smtp.example.org", 587, True, "beamwatch@example.org")
    assert isinstance(slack, SlackNotifier) and slack.channel == "U0123ABC"
    assert slack.api_url == "http://slack.test/api/"
    assert isinstance(signal, AppriseNotifier)
    assert signal.plugin.targets == ["+442222222222"]
    assert signal.plugin.host == "signal-api.example.org" and signal.plugin.port == 8080
    assert isinstance(whatsapp, AppriseNotifier) and whatsapp.plugin.targets == ["+443333333333"]
    assert isinstance(webhook, WebhookNotifier)
    assert webhook.destination == "webhook https://ana.example.org"


def test_person_order_is_kept() -> None:
    reg = build_registry(config(
        channels=CHANNELS, people={"ana": {**ANA, "order": ["signal", "email"]}}))
    kinds = [n.name.split("/")[1] for n in reg.person("ana")]
    assert kinds == ["signal", "email", "slack", "whatsapp", "webhook"]


def test_resolve_targets() -> None:
    reg = build_registry(config(channels=CHANNELS, people={"ana": ANA}))
    assert [n.name for n in reg.resolve("person:ana/signal")] == ["person:ana/signal"]
    assert len(reg.resolve("person:ana")) == 5
    with pytest.raises(KeyError, match="no destination 'channel:nope'"):
        reg.resolve("channel:nope")
    with pytest.raises(KeyError, match="give channel:NAME"):
        reg.resolve("team:x")


def test_missing_people_channel_is_a_problem_with_an_example() -> None:
    cfg = config(channels={"mail": CHANNELS["mail"]}, people={"ana": {"signal": "+442222222222"}})
    problems = registry_problems(cfg)
    assert problems == [(
        ("people", "ana", "signal"),
        "ana's signal: no channel can deliver signal to people; add one, e.g. channels: "
        "{signal: {url: 'signal://signal-api:8080/+441234567890'}} "
        "(the signal-cli-rest-api address and the sender number)",
    )]
    with pytest.raises(NotifyConfigError, match=r"people.ana.signal: ana's signal"):
        build_registry(cfg)


def test_two_candidate_channels_need_a_mark() -> None:
    other = {**CHANNELS["mail"], "smtp_host": "smtp2.example.org"}
    cfg = config(channels={"a": CHANNELS["mail"], "b": other},
                 people={"ana": {"email": "ana@example.org"}})
    [(path, message)] = registry_problems(cfg)
    assert path == ("people", "ana", "email")
    assert "several channels could deliver email to people (a, b); mark one with people: true" \
        in message


def test_slack_name_instead_of_member_id_is_a_problem() -> None:
    cfg = config(channels=CHANNELS, people={"ana": {"slack": "@ana"}})
    [(path, message)] = registry_problems(cfg)
    assert path == ("people", "ana", "slack")
    assert "not a Slack member ID" in message


def test_invalid_signal_number_is_a_problem() -> None:
    cfg = config(channels=CHANNELS, people={"ana": {"signal": "call me"}})
    [(path, message)] = registry_problems(cfg)
    assert path == ("people", "ana", "signal") and "does not accept call me" in message


def test_bad_apprise_url_is_a_problem_without_the_secret() -> None:
    cfg = config(channels={"x": {"url": "nosuchscheme://tok-secret-123@host/"}})
    [(path, message)] = registry_problems(cfg)
    assert path == ("channels", "x", "url")
    assert "Apprise cannot use this nosuchscheme:// URL" in message
    assert "tok-secret-123" not in message


def test_email_channel_without_to_serves_people_only() -> None:
    mail = {**CHANNELS["mail"], "to": []}
    cfg = config(channels={"mail": mail}, people={"ana": {"email": "ana@example.org"}},
                 routes=[{"to": ["channel:mail", "person:ana"]}])
    [(path, message)] = registry_problems(cfg)
    assert path == ("routes", 0, "to", 0)
    assert "channel 'mail' has no to: addresses" in message
    reg = build_registry(cfg, strict=False)
    assert "channel:mail" not in reg and "person:ana/email" in reg
    with pytest.raises(KeyError, match="channel 'mail' has no to: addresses"):
        reg.resolve("channel:mail")


def test_non_strict_keeps_the_good_ones() -> None:
    cfg = config(channels={"x": {"url": "nosuchscheme://h/"}, "ntfy": CHANNELS["ntfy"]})
    reg = build_registry(cfg, strict=False)
    assert list(reg) == ["channel:ntfy"]
    with pytest.raises(NotifyConfigError, match="channels.x.url"):
        reg.resolve("channel:x")


def test_template_problem_is_reported(tmp_path) -> None:
    (tmp_path / "alarm.text.j2").write_text("{% if %}")
    problems = registry_problems(config(channels=CHANNELS, templates=str(tmp_path)))
    assert problems[0][0] == ("templates",)
    assert f"{tmp_path / 'alarm.text.j2'}:1:" in problems[0][1]
