"""Acceptance timelines: at t=0 a fault; exactly these messages, at these times."""

import pytest
from support.timeline import Timeline

from beamwatch.model import MuteReason, Severity
from beamwatch.store.noise import NoiseStore

BASE = """
beamline: I04
storage: {url: "sqlite:///{db}"}
modes: {names: [user, unattended, shutdown], default: user}
channels:
  hook: {kind: webhook, webhook_url: "{hook}hook"}
  oncall-hook: {kind: webhook, webhook_url: "{hook}oncall"}
"""


def config(checks: str, routes: str = "routes:\n  - to: [channel:hook]\n") -> str:
    return BASE + checks + routes


DCM = """
checks:
  - id: dcm-temp
    pv: BL04I-MO-DCM-01:TEMP1
    above: {minor: 120, major: 140}
    for: 30s
"""


@pytest.fixture
def timeline(tmp_path, httpserver):
    def make(text):
        return Timeline(tmp_path, text, httpserver)
    return make


async def test_fault_under_for_delay_notifies_once_after_the_delay(timeline):
    async with timeline(config(DCM)) as tl:
        tl.set("BL04I-MO-DCM-01:TEMP1", 150.0)
        await tl.run_until(120)
    [msg] = tl.messages()
    assert 30 <= msg.t <= 31
    assert msg.body["kind"] == "alarm" and msg.body["severity"] == "MAJOR"
    assert msg.body["check_ids"] == ["dcm-temp"] and msg.body["value"] == "150"


async def test_a_5s_spike_under_for_30s_notifies_nobody(timeline):
    async with timeline(config(DCM)) as tl:
        tl.set("BL04I-MO-DCM-01:TEMP1", 150.0)
        await tl.run_until(5)
        tl.set("BL04I-MO-DCM-01:TEMP1", 100.0)
        await tl.run_until(120)
        rows = tl.app.store.transitions(check_id="dcm-temp")
    assert tl.messages() == []
    assert rows == []  # not even a transition: the delay absorbed it


async def test_resolve_goes_to_those_told(timeline):
    async with timeline(config(DCM)) as tl:
        tl.set("BL04I-MO-DCM-01:TEMP1", 150.0)
        await tl.run_until(40)
        tl.set("BL04I-MO-DCM-01:TEMP1", 100.0)
        await tl.run_until(130)
    assert [m.body["kind"] for m in tl.messages()] == ["alarm", "resolve"]
    # the clear waits out `for:` (30 s), then the recovery grace (30 s) in case it bounces
    assert 100 <= tl.messages("resolve")[0].t <= 101


async def test_a_restart_while_a_resolve_waits_out_its_grace_still_resolves_once(timeline):
    async with timeline(config(DCM)) as tl:
        tl.set("BL04I-MO-DCM-01:TEMP1", 150.0)
        await tl.run_until(40)
        tl.set("BL04I-MO-DCM-01:TEMP1", 100.0)
        await tl.run_until(80)  # cleared at 70 (for: 30s); the resolve is due at 100
        assert tl.messages("resolve") == []
        await tl.restart()
        tl.set("BL04I-MO-DCM-01:TEMP1", 100.0)
        await tl.run_until(160)
    assert [m.body["kind"] for m in tl.messages()] == ["alarm", "resolve"]
    assert 100 <= tl.messages("resolve")[0].t <= 101


async def test_a_fault_bouncing_back_within_the_grace_is_not_resolved(timeline):
    async with timeline(config(DCM.replace("for: 30s", "for: 0s"))) as tl:
        tl.set("BL04I-MO-DCM-01:TEMP1", 150.0)
        await tl.run_until(10)
        tl.set("BL04I-MO-DCM-01:TEMP1", 100.0)
        await tl.run_until(20)
        tl.set("BL04I-MO-DCM-01:TEMP1", 150.0)  # back within the 30 s recovery grace
        await tl.run_until(120)
        assert [m.body["kind"] for m in tl.messages()] == ["alarm"]
        tl.set("BL04I-MO-DCM-01:TEMP1", 100.0)  # now for good
        await tl.run_until(200)
    assert [m.body["kind"] for m in tl.messages()] == ["alarm", "resolve"]


async def test_a_channel_failing_for_good_hands_the_page_to_the_fallback(timeline):
    routes = """
routes:
  - to: [channel:broken]
fallback: [channel:oncall-hook]
"""
    text = config(DCM, routes).replace(
        "channels:\n", 'channels:\n  broken: {kind: webhook, webhook_url: "{hook}gone"}\n')
    tl = timeline(text)
    tl.server.expect_request("/gone", method="POST").respond_with_data("gone", status=410)
    async with tl:
        tl.set("BL04I-MO-DCM-01:TEMP1", 150.0)
        await tl.run_until(60)
    page, failure = tl.messages(path="/oncall")
    assert page.body["kind"] == "alarm" and page.body["check_ids"] == ["dcm-temp"]
    assert "[sent to the fallback: channel:broken failed for good" in page.body["text"]
    assert 30 <= page.t <= 31
    # and beamwatch says, on its own check, that a channel fails for good
    assert failure.body["check_ids"] == ["beamwatch.delivery"]


REPEAT = """
routes:
  - to: [channel:hook]
    repeat: 10m
    escalate: {after: 15m, to: [channel:oncall-hook]}
"""


async def test_repeat_and_escalation_until_acknowledged(timeline):
    checks = DCM.replace("for: 30s", "for: 0s")
    async with timeline(config(checks, REPEAT)) as tl:
        tl.set("BL04I-MO-DCM-01:TEMP1", 150.0)
        await tl.run_until(16 * 60)
        assert [m.body["kind"] for m in tl.messages()] == ["alarm", "repeat"]
        assert 600 <= tl.messages("repeat")[0].t <= 601
        [esc] = tl.messages(path="/oncall")
        assert esc.body["kind"] == "escalation" and 900 <= esc.t <= 901
        tl.app.engine.acknowledge("dcm-temp", "ana")
        await tl.run_until(60 * 60)
    kinds = [m.body["kind"] for m in tl.messages()]
    assert kinds == ["alarm", "repeat", "ack"]  # the ack stopped the repeats
    assert tl.messages("ack")[0].body["actor"] == "ana"
    assert [m.body["kind"] for m in tl.messages(path="/oncall")] == ["escalation", "ack"]


GROUPED = """
checks:
""" + "".join(f"""
  - id: gauge-{i}
    pv: BL04I-VA-GAUGE-0{i}:P
    above: {{major: 1.0e-6}}
""" for i in range(1, 4)) + """
routes:
  - to: [channel:hook]
    group_wait: 30s
"""


async def test_alarms_within_group_wait_are_one_message(timeline):
    async with timeline(BASE + GROUPED) as tl:
        for i in range(1, 4):
            tl.set(f"BL04I-VA-GAUGE-0{i}:P", 1e-3)
            await tl.run_until(tl.now + 5)
        await tl.run_until(120)
    [msg] = tl.messages()
    assert 30 <= msg.t <= 31
    assert sorted(msg.body["check_ids"]) == ["gauge-1", "gauge-2", "gauge-3"]
    assert len(msg.body["alarms"]) == 3


async def test_server_errors_are_retried_and_delivered_once(timeline, httpserver):
    async with timeline(config(DCM.replace("for: 30s", "for: 0s"))) as tl:
        calls = []
        original = tl._record

        def flaky(request):
            from werkzeug import Response
            calls.append(tl.now)
            if len(calls) <= 2:
                return Response("busy", status=503)
            return original(request)

        httpserver.clear()
        httpserver.expect_request("/hook", method="POST").respond_with_handler(flaky)
        tl.set("BL04I-MO-DCM-01:TEMP1", 150.0)
        await tl.run_until(120)
        [row] = tl.app.worker.outbox.rows(kind="alarm")
        attempts = tl.app.worker.outbox.attempts(row["id"])
    assert len(tl.messages()) == 1 and len(calls) == 3
    assert row["status"] == "sent" and row["attempts"] == 3
    assert [a["ok"] for a in attempts] == [False, False, True]
    assert "503" in attempts[0]["detail"]


async def test_rate_limit_retry_after_is_honoured(timeline, httpserver):
    async with timeline(config(DCM.replace("for: 30s", "for: 0s"))) as tl:
        calls = []
        original = tl._record

        def limited(request):
            from werkzeug import Response
            calls.append(tl.now)
            if len(calls) == 1:
                return Response("slow down", status=429, headers={"Retry-After": "20"})
            return original(request)

        httpserver.clear()
        httpserver.expect_request("/hook", method="POST").respond_with_handler(limited)
        tl.set("BL04I-MO-DCM-01:TEMP1", 150.0)
        await tl.run_until(60)
    assert len(calls) == 2 and 20 <= calls[1] - calls[0] <= 21


async def test_a_channel_down_past_expiry_gets_one_summary_not_a_flood(timeline, httpserver):
    text = (BASE.replace('webhook_url: "{hook}hook"}', 'webhook_url: "{hook}hook", expire: 2m}')
            + GROUPED.replace("group_wait: 30s", "group_wait: 0s"))
    async with timeline(text) as tl:
        down = True
        original = tl._record

        def outage(request):
            from werkzeug import Response
            return Response("down", status=502) if down else original(request)

        httpserver.clear()
        httpserver.expect_request("/hook", method="POST").respond_with_handler(outage)
        for i in range(1, 4):
            tl.set(f"BL04I-VA-GAUGE-0{i}:P", 1e-3)
            await tl.run_until(tl.now + 20)
        await tl.run_until(200)
        down = False
        await tl.run_until(600)
    # beamwatch also tells that its outbox was stuck for over 2 minutes (beamwatch.outbox);
    # on a loaded machine another of its own checks (the event loop late) may speak too
    own = [m for m in tl.messages()
           if m.body["check_ids"] and all(c.startswith("beamwatch.")
                                          for c in m.body["check_ids"])]
    outbox = [m for m in own if m.body["check_ids"] == ["beamwatch.outbox"]]
    assert outbox and outbox[0].body["kind"] == "alarm"
    others = [m for m in tl.messages() if m not in own]
    assert len(others) == 1, [(m.body["kind"], m.body["check_ids"]) for m in others]
    [msg] = others
    # the three gauges in one summary (with beamwatch's own alarm, if it was held too)
    gauges = [a for a in msg.body["alarms"] if not a["check_id"].startswith("beamwatch.")]
    assert msg.body["kind"] == "summary" and len(gauges) == 3


MODES = """
checks:
  - id: detector-temp
    pv: BL04I-EA-EIGER-01:CAM:Temp0_RBV
    above: {major: 45}
    modes: [user, unattended]
"""


async def test_check_not_active_in_mode_notifies_nobody_but_is_logged(timeline):
    async with timeline(config(MODES)) as tl:
        NoiseStore(tl.app.store).set_override(  # as `beamwatch mode set` does
            "shutdown", author="ana", reason="shutdown week", now=tl.clock.now(),
            until=tl.clock.now() + 86400)
        await tl.app.sync_noise()  # what the next tick does
        tl.set("BL04I-EA-EIGER-01:CAM:Temp0_RBV", 50.0)
        await tl.run_until(60)
        [row] = tl.app.store.transitions(check_id="detector-temp")
    assert tl.messages() == []
    assert row.transition.new == Severity.MAJOR
    assert row.transition.muted == MuteReason.MODE
    assert row.transition.mute_detail == "not active in mode shutdown"


async def test_silence_expiring_while_fault_persists_notifies_then_once(timeline):
    async with timeline(config(DCM.replace("for: 30s", "for: 0s"))) as tl:
        now = tl.clock.now()
        NoiseStore(tl.app.store).add_silence(  # as `beamwatch silence` does
            ["check=dcm-temp"], start=now, end=now + 300, author="ana",
            reason="changing chiller", now=now)
        await tl.app.sync_noise()  # what the next tick does
        tl.set("BL04I-MO-DCM-01:TEMP1", 150.0)
        await tl.run_until(900)
        [row] = tl.app.store.transitions(check_id="dcm-temp")
    [msg] = tl.messages()
    assert 300 <= msg.t <= 302
    assert row.transition.muted == MuteReason.SILENCE
    assert "silenced by ana" in row.transition.mute_detail


CHATTER = """
checks:
  - id: gauge
    pv: BL04I-VA-GAUGE-04:P
    above: {major: 1.0e-7}
"""


async def test_a_chattering_gauge_pages_once_and_is_marked_flapping(timeline):
    async with timeline(config(CHATTER)) as tl:
        for k in range(600):  # flips across its limit every 2 s for 20 minutes
            tl.set("BL04I-VA-GAUGE-04:P", 2e-7 if k % 2 == 0 else 5e-8)
            await tl.run_until(tl.now + 2)
        rows = tl.app.store.transitions(check_id="gauge")
    kinds = [m.body["kind"] for m in tl.messages()]
    assert kinds.count("alarm") == 1 and "resolve" not in kinds  # still bouncing at the end
    assert any(r.transition.muted == MuteReason.FLAPPING for r in rows)


async def test_reload_applies_new_rules_keeps_state_and_pages_nobody_twice(timeline):
    two = DCM.replace("for: 30s", "for: 0s") + """
  - id: dcm-flow
    pv: BL04I-MO-DCM-01:FLOW
    below: {major: 2}
"""
    async with timeline(config(two)) as tl:
        tl.set("BL04I-MO-DCM-01:TEMP1", 150.0)
        tl.set("BL04I-MO-DCM-01:FLOW", 5.0)
        await tl.run_until(10)
        assert len(tl.messages("alarm")) == 1
        # the new file: dcm-temp now depends on dcm-flow, and a bad reload is refused first
        tl.path.write_text(tl.path.read_text().replace("    for: 0s", "    for: 0s\n    colour: x"))
        tl.app.reload()
        assert tl.app.config.check("dcm-temp").depends_on == []
        text = tl.path.read_text().replace("\n    colour: x", "\n    depends_on: [dcm-flow]")
        tl.path.write_text(text)
        tl.app.reload()
        await tl.run_until(30)
        assert tl.app.engine.runtimes["dcm-temp"].logic.state.severity == Severity.MAJOR
        tl.set("BL04I-MO-DCM-01:FLOW", 1.0)  # the new upstream fails: its own page
        await tl.run_until(60)
    alarms = [m.body["check_ids"][0] for m in tl.messages("alarm")]
    assert alarms == ["dcm-temp", "dcm-flow"]  # dcm-temp was not paged again


async def test_limits_follow_the_beamline_mode(timeline):
    checks = """
checks:
  - id: gauge
    pv: BL04I-VA-GAUGE-01:P
    above: {major: 5.0e-7}
    by_mode:
      shutdown: {above: {major: 1.0e-4}}   # vented for an intervention: only a leak matters
"""
    async with timeline(config(checks)) as tl:
        tl.set("BL04I-VA-GAUGE-01:P", 1e-6)
        await tl.run_until(5)
        assert tl.app.engine.runtimes["gauge"].logic.state.severity == Severity.MAJOR
        now = tl.clock.now()
        NoiseStore(tl.app.store).set_override("shutdown", author="ana", reason="venting",
                                              now=now, until=now + 3600)
        await tl.run_until(10)
        assert tl.app.engine.runtimes["gauge"].logic.state.severity == Severity.OK
