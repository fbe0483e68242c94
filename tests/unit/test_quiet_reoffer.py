"""A page held by someone's quiet hours is offered to them when their quiet hours end,
unless the alarm is over or acknowledged by then. A real App (in-memory source, SQLite,
outbox worker) on a fake clock, the person's webhook a real HTTP server on loopback."""

from __future__ import annotations

import json
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from beamwatch.app import App
from beamwatch.clock import FakeClock
from beamwatch.config import parse_config
from beamwatch.routing import Router
from beamwatch.sources.soft import SoftSource
from beamwatch.store.outbox import Outbox

LONDON = ZoneInfo("Europe/London")
PV = "BL04I-MO-DCM-01:TEMP1"

CONFIG = """
beamline: I04
timezone: Europe/London
storage: {url: "sqlite:///{db}"}
# the clock jumps 10 minutes a step: beamwatch's own health checks (store answering,
# outbox age) would read those jumps as stalls and page ana too; not what this tests
monitor: {checks: false}
checks:
  - id: dcm-temp
    pv: BL04I-MO-DCM-01:TEMP1
    above: {minor: 120, major: 140}
people:
  ana:
    webhook: "{hook}ana"
    timezone: Europe/London
    quiet_hours: {start: "22:00", end: "07:00"}
routes:
  - to: [person:ana]
"""


def london(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=LONDON).timestamp()


class Night:
    """The App at a given London wall-clock time; `run_until` steps the clock by hand."""

    def __init__(self, tmp_path, httpserver, start: str):
        self.clock = FakeClock(london(start))
        self.received: list[tuple[float, dict]] = []
        path = tmp_path / "bw.yaml"
        path.write_text(CONFIG.replace("{db}", str(tmp_path / "bw.db"))
                        .replace("{hook}", httpserver.url_for("/")))
        self.source = SoftSource("ca", self.clock)
        self.app = App(path, self.clock, {"ca": self.source})
        httpserver.expect_request("/ana", method="POST").respond_with_handler(self._record)

    def _record(self, request):
        from werkzeug import Response

        body = json.loads(request.data)
        if body["check_ids"] == ["dcm-temp"]:  # not beamwatch's own checks (beamwatch.*)
            self.received.append((self.clock.now(), body))
        return Response("ok")

    async def run_until(self, local: str, step: float = 600.0) -> None:
        """Advance in steps of `step` seconds (and exactly onto `local`), a tick each."""
        end = london(local)
        await self.app.step()
        while self.clock.now() < end:
            self.clock.t = min(end, self.clock.now() + step)
            await self.app.step()

    def rows(self) -> list[dict]:
        return Outbox(self.app.store).rows(receiver="person:ana", check_id="dcm-temp")


@pytest.fixture
async def night(tmp_path, httpserver):
    nights: list[Night] = []

    async def make(start: str) -> Night:
        n = Night(tmp_path, httpserver, start)
        await n.app.start()
        nights.append(n)
        return n

    yield make
    for n in nights:
        await n.app.close()


@pytest.mark.parametrize("evening, morning, hours", [
    ("2026-01-10T23:00", "2026-01-11T07:00", 8),
    ("2026-10-24T23:00", "2026-10-25T07:00", 9),  # clocks go back: a 25-hour day
    ("2026-03-28T23:00", "2026-03-29T07:00", 7),  # clocks go forward: a 23-hour day
])
async def test_a_minor_held_at_night_is_sent_once_at_the_end_of_quiet_hours(
        night, evening, morning, hours):
    n = await night(evening)
    n.source.push(PV, 130.0)  # MINOR: quiet hours keep it from ana tonight
    await n.run_until(morning.replace("07:00", "06:59"))
    assert n.received == []
    await n.run_until(morning)
    assert len(n.received) == 1
    await n.run_until(morning.replace("07:00", "09:00"))
    [(t, body)] = n.received  # once, at 07:00 her time, whatever the clocks did
    assert t == london(morning) == london(evening) + hours * 3600
    assert (body["kind"], body["severity"], body["check_ids"]) == ("alarm", "MINOR",
                                                                   ["dcm-temp"])
    assert "held by quiet hours" in body["text"]


async def test_acknowledged_before_morning_nobody_is_woken_later(night):
    n = await night("2026-10-24T23:00")
    n.source.push(PV, 130.0)
    await n.run_until("2026-10-25T03:00")
    assert n.app.engine.acknowledge("dcm-temp", "ben")
    await n.run_until("2026-10-25T09:00")
    assert n.received == []
    [row] = n.rows()
    assert (row["status"], row["last_error"]) == ("cancelled",
                                                  "cancelled: acknowledged by ben")


async def test_an_alarm_over_before_morning_is_not_offered(night):
    n = await night("2026-10-24T23:00")
    n.source.push(PV, 130.0)
    await n.run_until("2026-10-25T01:30")
    n.source.push(PV, 100.0)  # recovered in the night
    await n.run_until("2026-10-25T09:00")
    assert n.received == []
    assert [r["status"] for r in n.rows()] == ["cancelled"]


async def test_a_major_at_night_is_sent_at_once_and_not_again_in_the_morning(night):
    n = await night("2026-10-24T23:00")
    n.source.push(PV, 150.0)
    await n.run_until("2026-10-25T09:00")
    assert [(t, b["severity"]) for t, b in n.received] == [(london("2026-10-24T23:00"),
                                                             "MAJOR")]


def quiet_config(quiet: str):
    return parse_config(f"""
beamline: I04
timezone: Europe/London
checks: [{{id: c1, pv: "X:1"}}]
people:
  ana: {{webhook: "https://h/a", quiet_hours: {quiet}}}
""", env={})


@pytest.mark.parametrize("quiet, at, end", [
    ('{start: "22:00", end: "07:00"}', "2026-10-24T23:00", "2026-10-25T07:00"),
    ('{start: "22:00", end: "07:00"}', "2026-10-25T03:00", "2026-10-25T07:00"),
    ('{start: "12:00", end: "14:00"}', "2026-10-25T13:59", "2026-10-25T14:00"),
    # ends at a time the clocks skip (01:30 on 2026-03-29): the hour after the gap
    ('{start: "23:00", end: "01:30"}', "2026-03-28T23:30", "2026-03-29T02:30"),
])
def test_quiet_end_is_the_next_end_on_the_wall_clock(quiet, at, end):
    router = Router(quiet_config(quiet))
    assert router.quiet_end("ana", london(at)) == london(end)


def test_quiet_end_when_the_end_time_happens_twice():
    router = Router(quiet_config('{start: "22:00", end: "01:30"}'))
    first = london("2026-10-25T01:30")  # 01:30 BST
    assert router.quiet_end("ana", first - 3600) == first
    # 01:10 GMT, the second time the clocks show 01:10: quiet until 01:30 GMT
    second_0110 = datetime(2026, 10, 25, 1, 10, tzinfo=LONDON, fold=1).timestamp()
    assert router.quiet_end("ana", second_0110) == first + 3600
    assert router.quiet_end("ana", first + 3600) is None  # 01:30 GMT: no longer quiet
