"""Alerts in from Alertmanager: labels -> checks, severity, fingerprints, resolve,
forgetting, restore, and the HTTP answers of the one ASGI app (in process)."""

from __future__ import annotations

import httpx
import pytest
from pydantic import ValidationError

from beamwatch.checks.evaluate import Check, CheckInput
from beamwatch.clock import FakeClock
from beamwatch.config.schema import CheckConfig, Config, WebConfig
from beamwatch.model import Severity
from beamwatch.sources.alertmanager import (
    AlertmanagerSource,
    WebhookIn,
    fingerprint,
    parse_time,
)
from beamwatch.web import create_app

CONFIG = Config.model_validate({
    "beamline": "T",
    "checks": [{"id": "ws1-down", "alert": {"alertname": "NodeDown", "instance": "ws1:9100"},
                "labels": {"team": "it"}},
               {"id": "disk", "alert": {"alertname": "DiskFull"}},
               {"id": "other-alerts", "alert": {}},
               {"id": "vac", "pv": "X:P", "above": {"major": 1}}],
    "alertmanager": {"forget_after": "1h"},
})


def alert(name: str, status: str = "firing", **labels) -> dict:
    return {"status": status, "labels": {"alertname": name, **labels},
            "annotations": {"summary": f"{name} happened"},
            "startsAt": "2026-12-01T06:00:00.123456789Z", "endsAt": "0001-01-01T00:00:00Z"}


def webhook(*alerts: dict) -> WebhookIn:
    return WebhookIn.model_validate({"version": "4", "status": "firing", "receiver": "bw",
                                     "alerts": list(alerts)})


@pytest.fixture
def source() -> AlertmanagerSource:
    src = AlertmanagerSource.from_config("alertmanager", CONFIG, FakeClock())
    src.subscribe(["ws1-down", "disk", "other-alerts"])
    return src


def judged(source: AlertmanagerSource, check_id: str):
    now = source.clock.now()
    inp = CheckInput(started=now)
    inp.update(source.sample(check_id, now))
    return Check(CONFIG.check(check_id), CONFIG.check_ids).evaluate(inp, now)


def test_the_selecting_labels_are_the_checks_own_for_routes_and_silences():
    assert CONFIG.check("ws1-down").labels == {"alertname": "NodeDown", "instance": "ws1:9100",
                                               "team": "it"}
    assert CONFIG.check("ws1-down").input_source == "alertmanager"


def test_alert_checks_refuse_thresholds_and_sources():
    with pytest.raises(ValueError, match="alerts' own severity"):
        CheckConfig.model_validate({"id": "c", "alert": {"a": "b"}, "above": {"major": 1}})
    with pytest.raises(ValueError, match="source: is for"):
        CheckConfig.model_validate({"id": "c", "alert": {"a": "b"}, "source": "x"})


async def test_labels_pick_the_first_check_and_severity_label_its_severity(source):
    taken = await source.receive(webhook(
        alert("NodeDown", instance="ws1:9100", severity="critical"),
        alert("DiskFull", instance="ws2:9100", severity="warning"),
        alert("Whatever", severity="info"),
        alert("NodeDown", instance="ws9:9100")))  # not ws1: the catch-all takes it
    assert taken.checks == ["disk", "other-alerts", "ws1-down"] and taken.unmatched == []
    ws1 = judged(source, "ws1-down")
    assert ws1.severity == Severity.MAJOR and ws1.value == 1
    assert ws1.message == "NodeDown (instance=ws1:9100) firing: NodeDown happened"
    assert judged(source, "disk").severity == Severity.MINOR
    other = judged(source, "other-alerts")
    # info -> minor, no severity label -> the default (major): the worst wins
    assert other.severity == Severity.MAJOR and other.value == 2
    assert other.message.startswith("2 alerts firing: ")


async def test_the_labels_its_firing_alerts_share_travel_with_the_sample(source):
    await source.receive(webhook(alert("Backup", job="tape", host="a", severity="warning"),
                                 alert("Scrub", job="tape", host="b", severity="warning")))
    sample = source.sample("other-alerts", source.clock.now())
    assert sample.labels == {"job": "tape", "severity": "warning"}


async def test_the_same_fingerprint_again_is_one_alert_and_resolved_is_ok(source):
    for _ in range(3):
        await source.receive(webhook(alert("DiskFull", instance="a", severity="critical")))
    assert judged(source, "disk").value == 1
    await source.receive(webhook(alert("DiskFull", "resolved", instance="a",
                                       severity="critical")))
    ok = judged(source, "disk")
    assert ok.severity == Severity.OK and ok.value == 0 and ok.message == "no alert firing"


async def test_the_senders_fingerprint_is_the_key_when_given(source):
    a = {**alert("DiskFull", instance="a"), "fingerprint": "abc123"}
    await source.receive(webhook(a))
    assert set(source.alerts) == {"abc123"}
    await source.receive(webhook({**a, "status": "resolved"}))
    assert source.alerts == {}
    await source.receive(webhook(alert("DiskFull", instance="a")))
    assert set(source.alerts) == {fingerprint({"alertname": "DiskFull", "instance": "a"})}


async def test_no_check_takes_it_without_a_catch_all():
    config = Config.model_validate({"beamline": "T", "checks": [
        {"id": "disk", "alert": {"alertname": "DiskFull"}}]})
    src = AlertmanagerSource.from_config("alertmanager", config, FakeClock())
    taken = await src.receive(webhook(alert("NodeDown", instance="x")))
    assert taken.unmatched == ["NodeDown (instance=x)"] and src.alerts == {}


async def test_stored_before_it_counts_and_a_failing_store_changes_nothing(source):
    kept: list = []

    async def keep(firing, gone):
        kept.append((firing, gone))

    source.keep = keep
    await source.receive(webhook(alert("DiskFull", instance="a")))
    assert kept[0][0][0]["labels"] == {"alertname": "DiskFull", "instance": "a"}

    async def broken(firing, gone):
        raise OSError("disk I/O error")

    source.keep = broken
    with pytest.raises(OSError):
        await source.receive(webhook(alert("DiskFull", "resolved", instance="a")))
    assert judged(source, "disk").value == 1  # Alertmanager sends it again: still firing


async def test_an_alert_not_sent_again_is_forgotten_after_forget_after(source):
    batches: list = []
    await source.start(batches.append)
    try:
        await source.receive(webhook(alert("DiskFull", instance="a")))
        source.clock.advance(3500)
        assert await source.forget() == []
        source.clock.advance(200)
        assert await source.forget() == ["disk"]
        assert batches[-1][0].value == 0 and judged(source, "disk").severity == Severity.OK
    finally:
        await source.stop()


async def test_restore_takes_back_recent_alerts_only(source):
    now = source.clock.now()
    rows = [{"fingerprint": "f1", "labels": {"alertname": "DiskFull"}, "annotations": {},
             "starts_at": now - 100, "received": now - 100},
            {"fingerprint": "f2", "labels": {"alertname": "DiskFull", "x": "old"},
             "annotations": {}, "starts_at": now - 9000, "received": now - 9000}]
    source.restore(rows)
    assert set(source.alerts) == {"f1"} and judged(source, "disk").value == 1


async def test_a_reload_gives_kept_alerts_to_the_checks_that_now_take_them(source):
    await source.receive(webhook(alert("DiskFull", instance="a")))
    reloaded = Config.model_validate({"beamline": "T", "checks": [
        {"id": "disk-a", "alert": {"alertname": "DiskFull", "instance": "a"}}]})
    source.subscribe(["disk-a"])
    source.reconfigure(reloaded)
    assert source.sample("disk-a", source.clock.now()).value == 1
    assert source.sample("disk", source.clock.now()).value == 0


def test_times_as_alertmanager_writes_them():
    assert parse_time("2026-12-01T06:00:00.123456789Z", 0) == pytest.approx(1796104800.123456)
    assert parse_time("0001-01-01T00:00:00Z", 5.0) == 5.0
    assert parse_time("yesterday", 5.0) == 5.0


def test_only_version_4_payloads():
    with pytest.raises(ValidationError):
        WebhookIn.model_validate({"version": "3", "alerts": []})
    with pytest.raises(ValidationError):
        WebhookIn.model_validate({"version": "4", "alerts": [{"status": "firing",
                                                              "labels": {}}]})


# -- the HTTP answers ----------------------------------------------------------------


def client(source: AlertmanagerSource, tokens: dict | None = None) -> httpx.AsyncClient:
    web = WebConfig(tokens=tokens or {})
    app = create_app(receive_beat=lambda *a: None, verdict=lambda: (True, ""),
                     receive_alerts=source.receive, web=lambda: web)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bw")


async def test_http_answers(source):
    body = {"version": "4", "alerts": [alert("DiskFull", instance="a")]}
    async with client(source, {"alertmanager": "t0ken"}) as http:
        r = await http.post("/api/alertmanager", json=body)
        assert r.status_code == 401 and "web.tokens" in r.json()["error"]
        assert source.alerts == {}
        auth = {"Authorization": "Bearer t0ken"}
        r = await http.post("/api/alertmanager", json=body, headers=auth)
        assert r.status_code == 200
        assert r.json() == {"alerts": 1, "checks": ["disk"], "unmatched": []}
        r = await http.post("/api/alertmanager", json={"version": "4", "alerts": [
            {"status": "burning", "labels": {"a": "b"}}]}, headers=auth)
        assert r.status_code == 422 and "alerts.0.status" in r.json()["error"]
        r = await http.post("/api/alertmanager", content=b"{not json", headers=auth)
        assert r.status_code == 422 and "error" in r.json()


async def test_a_store_that_fails_is_a_503_for_alertmanager_to_retry(source):
    async def broken(firing, gone):
        raise OSError("database is locked")

    source.keep = broken
    async with client(source) as http:
        r = await http.post("/api/alertmanager", json={"version": "4", "alerts": [
            alert("DiskFull")]})
    assert r.status_code == 503 and "send them again" in r.json()["error"]
