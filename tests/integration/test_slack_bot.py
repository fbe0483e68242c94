"""The Slack bot inside a real App.run (SQLite store, outbox worker, the web app on a
loopback port), against a local Slack (tests/support/fake_slack.py) reached through
`api_url`: signed requests in HTTP mode, Socket Mode end to end, alert buttons, retries,
rate limits and a Slack outage."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import httpx
import pytest

from beamwatch import slack as slack_bot
from beamwatch.api import audit
from beamwatch.app import App
from beamwatch.slack import bot as bot_module
from beamwatch.sources.soft import SoftSource
from beamwatch.store.noise import NoiseStore
from beamwatch.web.server import for_app
from tests.support import slack_requests as req
from tests.support.fake_slack import FakeSlack

pytestmark = pytest.mark.integration

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
PV = "BL04I-MO-DCM-01:TEMP1"
CONFIG = """
beamline: I04
timezone: Europe/London
storage: {{url: "sqlite:///{db}"}}
web: {{listen: "127.0.0.1:0"}}
monitor: {{checks: false}}
slack:
  mode: {mode}
  bot_token: xoxb-bot
  app_token: xapp-1-app
  signing_secret: {secret}
  api_url: "{api}"
  roles: {{viewer: ["*"], operator: [U0ANA]}}
checks:
  - {{id: dcm-temp, name: DCM crystal temperature, group: optics, pv: "{pv}",
      above: {{minor: 120, major: 140}}}}
people:
  ana: {{name: Ana Lopez, slack: U0ANA}}
  ben: {{name: Ben Okafor, slack: U0BEN}}
channels:
  alarms: {{kind: slack, token: xoxb-bot, channel: "#i04-alarms", api_url: "{api}",
            people: true}}
routes:
  - to: [channel:alarms]
"""


@pytest.fixture
def fake():
    with FakeSlack() as slack:
        slack.channels["i04-alarms"] = "C0ALARMS"
        slack.users.update({"U0ANA": {"name": "ana", "real_name": "Ana Lopez"},
                            "U0VIS": {"name": "vis", "real_name": "A Visitor"}})
        yield slack


class Running:
    """App.run with the bot and the web app, in this test's loop."""

    def __init__(self, tmp_path: Path, fake: FakeSlack, mode: str = "http"):
        path = tmp_path / "bw.yaml"
        path.write_text(CONFIG.format(db=tmp_path / "bw.db", mode=mode, secret=SECRET,
                                      api=fake.url, pv=PV))
        self.source = SoftSource("ca")
        self.app = App(path, sources={"ca": self.source})
        self.bot = slack_bot.for_app(self.app)
        self.web = for_app(self.app, slack=self.bot)
        self.fake = fake

    async def __aenter__(self) -> Running:
        self.task = asyncio.create_task(self.app.run(services=[self.web.serve,
                                                                self.bot.serve]))
        await asyncio.wait_for(self.app.ready.wait(), 30)  # leading, subscribed
        async with httpx.AsyncClient() as client:  # serving: /healthz answers
            for _ in range(100):
                try:
                    await client.get(self.web.url + "/healthz")
                    break
                except httpx.TransportError:
                    await asyncio.sleep(0.05)
        return self

    async def __aexit__(self, *exc) -> None:
        self.app.stop()
        await asyncio.wait_for(self.task, 30)

    async def post(self, body: str, *, content_type: str = "application/x-www-form-urlencoded",
                   headers: dict | None = None, at: float | None = None) -> httpx.Response:
        sent = {**req.signed(SECRET, body, at, content_type), **(headers or {})}
        async with httpx.AsyncClient(timeout=10) as client:
            return await client.post(self.web.url + "/slack/events", content=body,
                                     headers=sent)


async def until(predicate, timeout: float = 15.0, what: str = "it"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def text_of(blocks: list[dict]) -> str:
    return json.dumps(blocks)


async def test_a_signed_slash_command_is_answered_through_its_response_url(tmp_path, fake):
    async with Running(tmp_path, fake) as run:
        t0 = time.monotonic()
        answer = await run.post(req.slash("status", "U0VIS", fake.response_url("st")))
        assert answer.status_code == 200
        assert time.monotonic() - t0 < 3.0  # Slack's limit, with a wide margin here
        reply = await fake.wait_for_response_async("st")
        assert reply["response_type"] == "ephemeral"  # a question: only for the asker
        assert "I04: 0 in alarm" in text_of(reply["blocks"])


@pytest.mark.parametrize("tamper", ["signature", "old", "missing"])
async def test_a_bad_or_old_signature_is_401_and_nothing_is_done(tmp_path, fake, tamper):
    async with Running(tmp_path, fake) as run:
        body = req.slash("silence dcm-temp 2h forged", "U0ANA", fake.response_url("x"))
        headers = {"signature": {"X-Slack-Signature": "v0=" + "0" * 64},
                   "missing": {"X-Slack-Signature": ""}, "old": {}}[tamper]
        at = time.time() - 6 * 60 if tamper == "old" else None  # Slack's limit: 5 minutes
        answer = await run.post(body, headers=headers, at=at)
        assert answer.status_code == 401
        await asyncio.sleep(0.5)
        assert NoiseStore(run.app.store).silences(since=None) == []
        assert fake.responses("x") == []


async def test_a_silence_from_a_slash_command_is_public_audited_and_used(tmp_path, fake):
    async with Running(tmp_path, fake) as run:
        await run.post(req.slash("silence dcm-temp for 2h swapping the chiller", "U0ANA",
                                 fake.response_url("s"), user_name="ana"))
        reply = await fake.wait_for_response_async("s")
        assert reply["response_type"] == "in_channel", reply
        assert "ana" in reply["text"] and "silence #1" in reply["text"]
        [s] = NoiseStore(run.app.store).silences(since=None)
        assert (s.author, s.reason) == ("ana", "swapping the chiller")
        [entry] = audit.entries(run.app.store)
        assert (entry.action, entry.actor, entry.via) == ("silence", "ana", "slack")
        muter = run.app.decider.noise.silences  # the engine takes it up on its next tick
        await until(lambda: muter._silences, what="the engine to hold the silence")
        run.source.push(PV, 150.0)  # MAJOR, silenced: logged, nobody told
        await until(lambda: (st := run.app.store.state("dcm-temp")) and st.severity == 2,
                    what="the alarm stored")
        await asyncio.sleep(1.5)
        assert fake.calls("chat.postMessage") == []


async def test_a_viewer_is_refused_a_write_and_told_why(tmp_path, fake):
    async with Running(tmp_path, fake) as run:
        await run.post(req.slash("mode set shutdown for 1h sneaky", "U0VIS",
                                 fake.response_url("m"), user_name="vis"))
        reply = await fake.wait_for_response_async("m")
        assert "needs the operator role" in reply["text"]
        assert NoiseStore(run.app.store).overrides() == []
        [entry] = audit.entries(run.app.store)
        assert (entry.outcome, entry.action, entry.actor) == ("refused", "mode set",
                                                              "vis (slack U0VIS)")


async def test_a_retried_event_is_answered_once(tmp_path, fake):
    async with Running(tmp_path, fake) as run:
        body = req.event(req.dm("help", "U0ANA"), event_id="Ev0RETRY1")
        assert (await run.post(body, content_type="application/json")).status_code == 200
        retry = {"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"}
        assert (await run.post(body, content_type="application/json",
                               headers=retry)).status_code == 200
        first = await fake.wait_for_call_async("chat.postMessage")
        assert first.args["channel"] == "D0ANA" and "silence" in first.args["text"]
        await asyncio.sleep(1.0)
        assert len(fake.calls("chat.postMessage")) == 1


async def test_a_mention_asking_for_history_answers_the_asker_alone_with_a_png(tmp_path,
                                                                              fake):
    async with Running(tmp_path, fake) as run:
        for value in (100.0, 130.0, 150.0, 100.0):
            run.source.push(PV, value)
            await asyncio.sleep(1.2)
        await until(lambda: len(run.app.store.transitions(check_id="dcm-temp")) >= 3,
                    what="transitions logged")
        mention = req.mention("history dcm-temp 1h", "U0ANA")
        await run.post(req.event(mention), content_type="application/json")
        reply = await fake.wait_for_call_async(  # a question: only the asker sees it
            "chat.postEphemeral", lambda c: "dcm-temp: last 1h" in c.args.get("text", ""))
        assert (reply.args["user"], reply.args["thread_ts"]) == ("U0ANA", mention["ts"])
        assert "MAJOR" in reply.args["text"]
        done = await fake.wait_for_call_async("files.completeUploadExternal")
        assert done.args["channel_id"] == fake.dm_channel("U0ANA")  # the plot in their DM
        [png] = fake.uploads.values()
        assert png.startswith(b"\x89PNG")


async def test_acknowledge_on_the_alert_updates_it_and_is_logged_with_its_author(tmp_path,
                                                                                   fake):
    async with Running(tmp_path, fake) as run:
        run.source.push(PV, 150.0)
        alert = await fake.wait_for_call_async("chat.postMessage", timeout=20)
        actions = next(b for b in alert.args["blocks"] if b["type"] == "actions")
        ids = [e["action_id"] for e in actions["elements"]]
        assert ids == ["bw_ack", "bw_silence_1h", "bw_silence_4h", "bw_history"]
        ack = actions["elements"][0]
        channel, ts = alert.response["channel"], alert.response["ts"]
        answer = await run.post(req.button("bw_ack", ack["value"], "U0ANA", channel, ts,
                                           fake.response_url("a"), user_name="ana"))
        assert answer.status_code == 200
        update = await fake.wait_for_call_async(
            "chat.update", lambda c: c.args["ts"] == ts, timeout=20)
        assert "Acknowledged by *ana*" in text_of(update.args["blocks"])
        after = next(b for b in update.args["blocks"] if b["type"] == "actions")
        assert [e["action_id"] for e in after["elements"]] == ["bw_history"]
        state = run.app.store.state("dcm-temp")
        assert (state.acked, state.acked_by) == (True, "ana")
        [entry] = await until(lambda: audit.entries(run.app.store), what="the audit entry")
        assert (entry.action, entry.target, entry.via, entry.outcome) == (
            "ack", "dcm-temp", "slack", "done")


async def test_a_burst_of_acks_does_not_starve_the_engine_they_wait_for(tmp_path, fake):
    async with Running(tmp_path, fake) as run:
        run.source.push(PV, 150.0)
        await fake.wait_for_call_async("chat.postMessage", timeout=20)
        names = [f"ack-{i}" for i in range(12)]  # more than the loop's default threads
        await asyncio.gather(*(run.post(req.slash("ack dcm-temp", "U0ANA",
                                                  fake.response_url(n), user_name="ana"))
                               for n in names))
        replies = [await fake.wait_for_response_async(n, timeout=30) for n in names]
        texts = [r["text"] for r in replies]
        assert not [t for t in texts if "queued" in t], texts  # each applied, not timed out
        assert sum("acknowledged dcm-temp" in t for t in texts) == 1, texts
        assert sum("nothing to acknowledge" in t for t in texts) == 11


async def test_silence_button_by_a_viewer_is_refused_to_them_alone(tmp_path, fake):
    async with Running(tmp_path, fake) as run:
        run.source.push(PV, 150.0)
        alert = await fake.wait_for_call_async("chat.postMessage", timeout=20)
        value = next(b for b in alert.args["blocks"] if b["type"] == "actions")[
            "elements"][1]["value"]
        await run.post(req.button("bw_silence_1h", value, "U0VIS", "C0ALARMS",
                                  alert.response["ts"], fake.response_url("v")))
        reply = await fake.wait_for_response_async("v")
        assert reply["response_type"] == "ephemeral" and reply["replace_original"] is False
        assert "needs the operator role" in reply["text"]
        assert NoiseStore(run.app.store).silences(since=None) == []
        await run.post(req.button("bw_silence_1h", value, "U0ANA", "C0ALARMS",
                                  alert.response["ts"], fake.response_url("w")))
        said = await fake.wait_for_call_async(
            "chat.postMessage", lambda c: c.args.get("thread_ts") == alert.response["ts"])
        assert "silenced" in said.args["text"] and "check=dcm-temp" in said.args["text"]
        [s] = NoiseStore(run.app.store).silences(since=None)
        assert 3590 <= s.end - s.start <= 3610


async def test_a_rate_limited_reply_waits_out_retry_after(tmp_path, fake):
    async with Running(tmp_path, fake) as run:
        fake.fail_next("chat.postMessage", "ratelimited", 429, retry_after=1)
        t0 = time.monotonic()
        await run.post(req.event(req.dm("mode", "U0ANA")), content_type="application/json")
        reply = await fake.wait_for_call_async("chat.postMessage", lambda c: c.ok)
        assert time.monotonic() - t0 >= 1.0
        assert "mode *default*" in reply.args["text"] or "mode *" in reply.args["text"]
        assert [c.status for c in fake.calls("chat.postMessage")] == [429, 200]


async def test_slack_down_costs_the_bot_not_the_engine(tmp_path, fake):
    async with Running(tmp_path, fake) as run:
        await run.post(req.event(req.dm("mode", "U0ANA")), content_type="application/json")
        await fake.wait_for_call_async("chat.postMessage")  # the bot has met Slack
        fake.stop()  # Slack is gone: every Web API call now fails to connect
        body = req.event(req.dm("status", "U0ANA"))
        assert (await run.post(body, content_type="application/json")).status_code == 200
        run.source.push(PV, 150.0)
        await until(lambda: (st := run.app.store.state("dcm-temp")) and st.severity == 2,
                    what="the alarm decided and stored while Slack is down")
        async with httpx.AsyncClient() as client:
            health = await client.get(run.web.url + "/healthz")
        assert health.status_code == 200, health.text


async def test_a_subscription_made_in_chat_routes_the_next_alarm_to_its_person(tmp_path,
                                                                                fake):
    async with Running(tmp_path, fake) as run:
        await run.post(req.event(req.dm("subscribe optics major", "U0BEN", "D0BEN")),
                       content_type="application/json")
        said = await fake.wait_for_call_async("chat.postMessage")
        assert "ben now follows group optics at major and worse" in said.args["text"]
        await until(lambda: run.app.overlays, what="the engine to take the overlay")
        run.source.push(PV, 150.0)  # MAJOR: the route tells the channel, ben his DM
        dm = await fake.wait_for_call_async(
            "chat.postMessage", lambda c: c.args.get("channel") == "U0BEN", timeout=20)
        assert "DCM crystal temperature" in dm.args["text"]
        out = await asyncio.to_thread(config_diff, run.app.config_path)
        assert "people.ben.subscriptions  (by ben via slack" in out
        assert "+ in force: group optics at major and worse" in out


def config_diff(path: Path) -> str:
    from typer.testing import CliRunner

    from beamwatch.cli import app as cli

    result = CliRunner().invoke(cli, ["config", "diff", "-c", str(path)])
    assert result.exit_code == 0, result.output
    return result.output


# --- Socket Mode ---------------------------------------------------------------------------


async def test_socket_mode_reconnects_with_backoff_and_answers(tmp_path, fake, monkeypatch):
    monkeypatch.setattr(bot_module, "BACKOFF_FIRST", 0.1)
    monkeypatch.setattr(bot_module, "WATCH_EVERY", 0.1)
    fake.refuse_connections(2)  # Slack refuses twice: the bot backs off and tries again
    async with Running(tmp_path, fake, mode="socket") as run:
        await asyncio.wait_for(run.bot.connected.wait(), 15)
        await fake.wait_connected_async(1)  # the fake has registered the socket too
        assert fake.connections_opened == 3
        assert [c.token for c in fake.calls("apps.connections.open")] == ["xapp-1-app"] * 3
        envelope = fake.push_envelope("slash_commands", {
            "command": "/beamwatch", "text": "oncall", "user_id": "U0ANA", "user_name": "ana",
            "channel_id": "C0ALARMS", "response_url": fake.response_url("sock")})
        ack = await fake.wait_for_ack_async(envelope)
        assert ack["envelope_id"] == envelope
        reply = await fake.wait_for_response_async("sock")
        assert "no team has a rota" in reply["text"]

        fake.drop_connections()  # the socket dies: opened again without a restart
        await fake.wait_connected_async(2, timeout=15)
        await until(lambda: fake.open_connections == 1, what="one socket open")
        event = json.loads(req.event(req.dm("help", "U0ANA"), event_id="Ev0SOCK1"))
        first = fake.push_envelope("events_api", event)
        await fake.wait_for_ack_async(first)
        again = fake.push_envelope("events_api", event, retry_attempt=1,
                                   retry_reason="timeout")
        await fake.wait_for_ack_async(again)  # acked, so Slack stops retrying, but dropped
        await fake.wait_for_call_async("chat.postMessage")
        await asyncio.sleep(0.5)
        assert len(fake.calls("chat.postMessage")) == 1
