"""Mode changes announced, end to end: a real App with the soft source, a fake clock and
a real HTTP receiver. Mode messages go to the `kind: mode` route only, once, with who
and why, and a restart does not send them again."""

import pytest
from support.timeline import Timeline

from beamwatch.api.noise import set_mode

MODE_PV = "BL04I-CS-MODE:MODE"
CONFIG = """
beamline: I04
storage: {url: "sqlite:///{db}"}
modes: {names: [user, unattended, shutdown], default: user, from_pv: "BL04I-CS-MODE:MODE"}
channels:
  hook: {kind: webhook, webhook_url: "{hook}hook"}
  modes-hook: {kind: webhook, webhook_url: "{hook}oncall"}
checks:
  - id: dcm-temp
    pv: BL04I-MO-DCM-01:TEMP1
    above: {minor: 120, major: 140}
routes:
  - match: {severity: major}
    to: [channel:hook]
  - match: {kind: mode}
    to: [channel:modes-hook]
  - to: [channel:hook]
"""


@pytest.fixture
def tl(tmp_path, httpserver):
    return Timeline(tmp_path, CONFIG, httpserver)


def mode_messages(tl):
    return [m for m in tl.received if m.body["kind"] == "mode"]


async def test_the_mode_pv_going_to_shutdown_is_announced_once_to_the_mode_route(tl):
    async with tl:
        tl.set(MODE_PV, "user")
        tl.set("BL04I-MO-DCM-01:TEMP1", 100.0)
        await tl.run_until(5)
        tl.set(MODE_PV, "shutdown")
        tl.set("BL04I-MO-DCM-01:TEMP1", 150.0)  # an alarm at the same moment: alarm routes
        await tl.run_until(30)
        await tl.restart()  # CA sends the PV's value again on the new subscription
        tl.set(MODE_PV, "shutdown")
        tl.set("BL04I-MO-DCM-01:TEMP1", 150.0)
        await tl.run_until(60)
    [note] = mode_messages(tl)
    assert note.path == "/oncall" and 5 <= note.t <= 6
    assert note.body["mode_change"] == {"from": "user", "to": "shutdown", "source": "pv",
                                        "author": None, "reason": "mode PV reads 'shutdown'",
                                        "until": None}
    assert note.body["summary"] == "[I04] MODE: user → shutdown (mode PV)"
    assert [m.body["kind"] for m in tl.messages(path="/hook")] == ["alarm"]
    assert tl.messages(path="/oncall") == [note]


async def test_a_manual_override_is_announced_with_its_author_and_reason(tl):
    async with tl:
        tl.set(MODE_PV, "user")
        tl.set("BL04I-MO-DCM-01:TEMP1", 100.0)
        await tl.run_until(5)
        set_mode(tl.app.config, tl.app.store, "shutdown", for_="2m", author="ana",
                 reason="vacuum intervention", now=tl.clock.now())  # `beamwatch mode set`
        await tl.run_until(60)
        await tl.restart()  # the override is applied again at start: not news
        tl.set(MODE_PV, "user")
        tl.set("BL04I-MO-DCM-01:TEMP1", 100.0)
        await tl.run_until(200)  # the override runs out at 125
    override, expiry = mode_messages(tl)
    assert 5 <= override.t <= 6
    change = override.body["mode_change"]
    assert (change["from"], change["to"], change["source"]) == ("user", "shutdown", "override")
    assert (change["author"], change["reason"]) == ("ana", "vacuum intervention")
    assert change["until"] is not None
    assert "ana" in override.body["text"] and "vacuum intervention" in override.body["text"]
    assert 125 <= expiry.t <= 127
    assert expiry.body["mode_change"]["source"] == "expiry"
    assert (expiry.body["mode_change"]["from"], expiry.body["mode"]) == ("shutdown", "user")
    assert tl.messages(path="/hook") == []
