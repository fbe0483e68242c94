"""The whole Slack story on the simulated beamline, with `beamwatch run` as a process:
a fault -> the alert posted to Slack with its buttons -> Acknowledge pressed (a signed
interactivity request to /slack/events) -> the message updated in place saying by whom,
the escalation that was due 20 s later cancelled, and the ack in `beamwatch history`
with its author and the front end it came from."""

from __future__ import annotations

import json
import socket
import time

import httpx
import pytest

from beamwatch.store.outbox import Outbox
from tests.support import slack_requests as req
from tests.support.demo_run import Receivers, Watch
from tests.support.fake_slack import FakeSlack

pytestmark = pytest.mark.integration

SECRET = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"
ESCALATE_AFTER = 20.0  # seconds; the demo's 15 minutes, shortened


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def with_slack(api: str, port: int):
    def edit(text: str) -> str:
        text = text.replace("ana: {name: Ana Lopez,", "ana: {name: Ana Lopez, slack: U0ANA,")
        text = text.replace("to: [oncall:mx-support, channel:ops-console]",
                            "to: [oncall:mx-support, channel:ops-console, channel:slack-alarms]")
        assert "escalate: {after: 15m," in text, "the demo's escalation changed"
        text = text.replace("escalate: {after: 15m,", f"escalate: {{after: {ESCALATE_AFTER:g}s,")
        text = text.replace('channels:\n', 'channels:\n  slack-alarms: {kind: slack, token: '
                            f'xoxb-bot, channel: "#i04-alarms", api_url: "{api}", people: true}}\n')
        text = text.replace('web: {listen: "127.0.0.1:0"}', f'web: {{listen: "127.0.0.1:{port}"}}')
        return text + (f'\nslack: {{mode: http, bot_token: xoxb-bot, signing_secret: "{SECRET}",'
                       f' api_url: "{api}"}}\n')
    return edit


@pytest.fixture
def slack():
    with FakeSlack() as fake:
        fake.channels["i04-alarms"] = "C0ALARMS"
        fake.users["U0ANA"] = {"name": "ana", "real_name": "Ana Lopez"}
        yield fake


def test_fault_alert_acknowledge_in_slack_stops_escalation_and_is_logged(sim, httpserver,
                                                                         tmp_path, slack):
    port = free_port()
    watch = Watch(sim, Receivers(httpserver), tmp_path, edit=with_slack(slack.url, port))
    try:
        sim.fault("vacuum-loss")
        alert = slack.wait_for_call(
            "chat.postMessage", lambda c: c.args.get("channel") == "#i04-alarms"
            and any(b["type"] == "actions" for b in c.args.get("blocks") or []), timeout=60)
        posted = time.monotonic()
        actions = next(b for b in alert.args["blocks"] if b["type"] == "actions")
        ack = next(e for e in actions["elements"] if e["action_id"] == "bw_ack")
        check = json.loads(ack["value"])["check"]
        assert check == "fe-vacuum"  # the root cause, not one of its consequences
        channel, ts = alert.response["channel"], alert.response["ts"]

        body = req.button("bw_ack", ack["value"], "U0ANA", channel, ts,
                          slack.response_url("ack"), user_name="ana")
        t0 = time.monotonic()
        answer = httpx.post(f"http://127.0.0.1:{port}/slack/events", content=body,
                            headers=req.signed(SECRET, body), timeout=10)
        assert answer.status_code == 200 and time.monotonic() - t0 < 3.0

        update = slack.wait_for_call("chat.update", lambda c: c.args.get("ts") == ts,
                                     timeout=30)
        assert "Acknowledged by *ana*" in json.dumps(update.args["blocks"])

        # past the moment the escalation was due: cancelled by the ack, never sent
        time.sleep(max(0.0, posted + ESCALATE_AFTER + 8 - time.monotonic()))
        escalations = [r for r in Outbox(watch.store).rows(kind="escalation")
                       if r["check_id"] == check]
        assert escalations and all(r["status"] == "cancelled" for r in escalations), \
            [(r["status"], r["last_error"]) for r in escalations]
        assert "acknowledged by ana" in escalations[0]["last_error"]

        log = json.loads(watch.cli("history", "--json", "--check", check).stdout)
        acks = [r for r in log if r["kind"] == "transition" and r["reason"] == "ack"]
        assert [a["actor"] for a in acks] == ["ana"]
        [entry] = [r for r in log if r["kind"] == "audit"]
        assert (entry["action"], entry["actor"], entry["via"], entry["outcome"]) == (
            "ack", "ana", "slack", "done")
    finally:
        watch.stop()
        sim.clear()
