"""Alarms out to Alertmanager: the alerts a message becomes, the exact request
(pytest-httpserver as Alertmanager's v2 API), and whether a failure is retried."""

from __future__ import annotations

import json

import pytest

from beamwatch.config.schema import ChannelConfig, Config
from beamwatch.config.types import Secret
from beamwatch.model import Severity
from beamwatch.model.message import Message, Related
from beamwatch.notify.alertmanager import AlertmanagerNotifier
from beamwatch.notify.base import ErrorKind
from beamwatch.notify.registry import build_registry

CHECKS = {"fe-vac": ("vacuum", {"area": "fe"})}
T0 = 1796104800.0  # 2026-12-01T06:00:00Z


def message(kind: str = "alarm", severity: Severity = Severity.MAJOR, **kw) -> Message:
    base = dict(kind=kind, beamline="I04", title="FE vacuum", severity=severity,
                check_ids=("fe-vac",), text="3e-7 above major limit 1e-7", time=T0 + 60,
                since=T0, value="3e-07", incident_id="inc-1",
                link="https://bw.example/incidents/inc-1")
    return Message(**{**base, **kw})


def notifier(url: str = "http://am:9093", **kw) -> AlertmanagerNotifier:
    return AlertmanagerNotifier("channel:am", url, checks=CHECKS, **kw)


def test_an_alarm_is_one_alert_with_the_checks_labels_and_an_end_a_day_on():
    [alert] = notifier(labels={"team": "mx"}).alerts(message())
    assert alert["labels"] == {"alertname": "fe-vac", "check": "fe-vac", "beamline": "I04",
                               "group": "vacuum", "area": "fe", "severity": "critical",
                               "team": "mx"}
    assert alert["annotations"]["summary"] == "FE vacuum: 3e-7 above major limit 1e-7"
    assert alert["annotations"]["incident"] == "inc-1"
    assert alert["startsAt"] == "2026-12-01T06:00:00.000Z"
    assert alert["endsAt"] == "2026-12-02T06:01:00.000Z"
    assert alert["generatorURL"] == "https://bw.example/incidents/inc-1"


def test_a_resolve_ends_both_severities_with_the_same_labels():
    alerts = notifier().alerts(message("resolve", Severity.OK, since=None))
    assert [a["labels"]["severity"] for a in alerts] == ["critical", "warning"]
    assert all(a["endsAt"] == "2026-12-01T06:01:00.000Z" for a in alerts)
    firing = notifier().alerts(message())[0]["labels"]
    assert alerts[0]["labels"] == firing  # the very alert the alarm started


def test_worse_ends_the_minor_alert_and_mode_changes_post_nothing():
    alerts = notifier().alerts(message(previous_severity=Severity.MINOR))
    assert [(a["labels"]["severity"], a["endsAt"]) for a in alerts] == [
        ("critical", "2026-12-02T06:01:00.000Z"), ("warning", "2026-12-01T06:01:00.000Z")]
    assert notifier().alerts(message("mode", Severity.OK, mode="user")) == []


def test_a_summary_posts_each_alarm_it_lists():
    m = message("summary", alarms=(Related("fe-vac", "FE vacuum", Severity.MINOR, "2e-7"),
                                   Related("other", "Other", Severity.OK)))
    alerts = notifier().alerts(m)
    assert [(a["labels"]["alertname"], a["labels"]["severity"]) for a in alerts] == [
        ("fe-vac", "warning"), ("other", "critical"), ("other", "warning")]


async def test_the_request_alertmanager_gets(httpserver):
    httpserver.expect_ordered_request(
        "/api/v2/alerts", method="POST", headers={"Authorization": "Bearer s3cret"},
    ).respond_with_data("", status=200)
    n = notifier(httpserver.url_for("/"), token=Secret("s3cret"))
    try:
        delivery = await n.send(message())
    finally:
        await n.aclose()
    assert delivery.ok, delivery.detail
    [request] = [r for r, _ in httpserver.log]
    body = json.loads(request.data)
    assert body[0]["labels"]["alertname"] == "fe-vac"
    httpserver.check_assertions()


@pytest.mark.parametrize(("status", "kind", "retry"), [
    (400, ErrorKind.REJECTED, False), (401, ErrorKind.AUTH, False),
    (503, ErrorKind.SERVER, True)])
async def test_4xx_is_permanent_5xx_is_retried(httpserver, status, kind, retry):
    httpserver.expect_request("/api/v2/alerts").respond_with_data("bad", status=status)
    n = notifier(httpserver.url_for("/"), username="bw", password=Secret("pw"))
    try:
        delivery = await n.send(message())
    finally:
        await n.aclose()
    assert not delivery.ok and delivery.error == kind and delivery.retry is retry
    assert delivery.detail.startswith(f"alertmanager {httpserver.url_for('/').rstrip('/')} "
                                      f"answered HTTP {status}")


async def test_nobody_listening_is_retried():
    n = notifier("http://127.0.0.1:9", timeout=2)
    try:
        delivery = await n.send(message())
    finally:
        await n.aclose()
    assert delivery.error == ErrorKind.CONNECTION and delivery.retry


def test_channel_config():
    with pytest.raises(ValueError, match="needs url"):
        ChannelConfig.model_validate({"kind": "alertmanager"})
    with pytest.raises(ValueError, match="not both"):
        ChannelConfig.model_validate({"kind": "alertmanager", "url": "http://am:9093",
                                      "token": "t", "username": "u"})
    with pytest.raises(ValueError, match="only for kind alertmanager"):
        ChannelConfig.model_validate({"kind": "webhook", "webhook_url": "http://x",
                                      "labels": {"a": "b"}})
    config = Config.model_validate({"beamline": "I04", "channels": {"am": {
        "kind": "alertmanager", "url": "http://am:9093", "labels": {"team": "mx"}}},
        "checks": [{"id": "fe-vac", "pv": "FE:P", "group": "vacuum",
                    "above": {"major": 1e-7}}]})
    am = build_registry(config).channel("am")
    assert am.kind == "alertmanager" and am.destination == "alertmanager http://am:9093"
    assert am.checks["fe-vac"] == ("vacuum", {})
