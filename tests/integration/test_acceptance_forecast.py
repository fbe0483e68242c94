"""Acceptance: a slow fault on the simulated beamline (real IOCs) watched by `beamwatch run`
with the demo config — the draining dewar pages once, as a forecast, before its limit is
crossed, and the crossing is the same incident, with no second page."""

from __future__ import annotations

import time

from tests.support.demo_run import Receivers, Watch
from tests.support.waiting import wait_for

DEMO_FORECAST = 'forecast: {horizon: 30m, window: 15m, unit: "%"}'
# the demo's forecast at the test's pace: the dewar drains at 1.5 %/s (the demo's default
# is 0.4 %/min), so 25 s ahead here is an hour and a half ahead there; the page follows 10 s later
# (the demo's noise.settle: a root cause may show up). `severity: minor`: the forecast
# of the MAJOR limit is no second page, and this test is over before that limit
FAST_FORECAST = 'forecast: {horizon: 25s, window: 20s, severity: minor, unit: "%"}'


def test_a_draining_dewar_is_paged_once_ahead_and_the_alarm_joins_the_incident(
        sim, httpserver, tmp_path):
    receivers = Receivers(httpserver)

    def fast(text: str) -> str:
        assert DEMO_FORECAST in text, "the demo's dewar forecast changed: update this test"
        return text.replace(DEMO_FORECAST, FAST_FORECAST)

    watch = Watch(sim, receivers, tmp_path, edit=fast)
    try:
        receivers.got.clear()
        sim.fault("dewar-draining", rate=90.0)  # %/min: from 72 % to 25 % in 31 s
        page = wait_for(lambda: receivers.alarms(), 60, "the forecast's page")[0]
        assert page["check_ids"] == ["dewar-level"] and page["severity"] == "MINOR"
        assert "Message:   forecast: " in page["text"], page["text"]
        assert "falling 90 %/min: reaches 25 % (minor) in ~" in page["text"], page["text"]
        level = float(page["value"])
        assert level > 25, f"the page came at {level} %, after the limit"

        def came_true():
            log = [r.transition for r in watch.store.transitions(check_id="dewar-level")]
            return log if log and log[-1].reason == "forecast came true" else None

        log = wait_for(came_true, 60, "the real alarm")
        # the beamline log: the forecast, its page (decided once the settle time showed no
        # other root cause: the incident is named from then on), and the limit crossed
        assert [(t.old.name, t.new.name, t.reason) for t in log] == [
            ("OK", "MINOR", "forecast"), ("MINOR", "MINOR", "paged"),
            ("MINOR", "MINOR", "forecast came true")]
        assert log[1].incident_id is not None and log[1].incident_id == log[2].incident_id
        assert log[0].message.startswith("forecast: ")
        assert log[-1].message.endswith("below minor limit 25")
        sim.clear()  # the autofill refills it
        wait_for(lambda: watch.store.state("dewar-level").severity == 0, 60, "the refill")
        time.sleep(3)  # anything the crossing could still have sent has been sent
        pages = [p for p in receivers.alarms("/channel/ops") if "dewar-level" in p["check_ids"]]
        assert len(pages) == 1, [p["text"] for p in pages]  # one page, not two
        for path in ("/person/ana", "/person/ben"):  # nobody else is paged twice either
            assert len([p for p in receivers.alarms(path) if "dewar-level" in p["check_ids"]]) <= 1
    finally:
        watch.stop()
