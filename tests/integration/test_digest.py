"""The morning digest: at 08:00 (the beamline's time) one summary of the night to each
receiver — the incidents, who was paged and who acknowledged, what is still wrong —
and never twice for one day, whatever restarts. A real App on a fake clock, the
person's webhook a real HTTP server on loopback."""

from __future__ import annotations

import json
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from beamwatch.app import App
from beamwatch.clock import FakeClock
from beamwatch.sources.soft import SoftSource

pytestmark = pytest.mark.integration

LONDON = ZoneInfo("Europe/London")
CONFIG = """
beamline: I04
timezone: Europe/London
storage: {url: "sqlite:///{db}"}
web: {listen: "off", url: "https://beamwatch.example.org"}
monitor: {checks: false}
checks:
  - {id: dcm-temp, name: DCM crystal temperature, pv: "DCM:T", above: {major: 140}}
  - {id: cryo-temp, name: Sample temperature, pv: "CRYO:T", above: {major: 110}}
people:
  ana: {webhook: "{hook}ana"}
routes:
  - to: [person:ana]
digest: {at: "08:00", to: [person:ana]}
"""


def london(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=LONDON).timestamp()


class Night:
    def __init__(self, tmp_path, httpserver, start: str):
        self.clock = FakeClock(london(start))
        self.got: list[dict] = []
        self.path = tmp_path / "bw.yaml"
        self.path.write_text(CONFIG.replace("{db}", str(tmp_path / "bw.db"))
                             .replace("{hook}", httpserver.url_for("/")))
        httpserver.expect_request("/ana", method="POST").respond_with_handler(self._record)
        self.app = self._app()

    def _app(self) -> App:
        self.source = SoftSource("ca", self.clock)
        return App(self.path, self.clock, {"ca": self.source})

    def _record(self, request):
        from werkzeug import Response

        self.got.append(json.loads(request.data))
        return Response("ok")

    async def restart(self) -> None:
        await self.app.close()
        self.app = self._app()
        await self.app.start()

    async def run_until(self, local: str, step: float = 300.0) -> None:
        end = london(local)
        await self.app.step()
        while self.clock.now() < end:
            self.clock.t = min(end, self.clock.now() + step)
            await self.app.step()

    def digests(self) -> list[dict]:
        return [b for b in self.got if b["kind"] == "summary"]


async def test_the_night_in_one_message_at_eight_and_only_once(tmp_path, httpserver):
    night = Night(tmp_path, httpserver, "2026-01-10T01:00")
    await night.app.start()
    try:
        night.source.push("DCM:T", 150.0)  # 01:00 MAJOR: ana is paged
        await night.run_until("2026-01-10T02:00")
        assert night.app.engine.acknowledge("dcm-temp", "ben")
        night.source.push("DCM:T", 100.0)
        await night.run_until("2026-01-10T04:00")
        night.source.push("CRYO:T", 120.0)  # 04:00 and still wrong at 08:00
        await night.run_until("2026-01-10T07:55")
        assert night.digests() == []
        await night.run_until("2026-01-10T08:05")
        [digest] = night.digests()
        assert digest["summary"] == ("I04 digest: 2 incidents since Fri 08:00, "
                                     "1 still in alarm")
        dcm, cryo = [line for line in digest["text"].splitlines() if line.startswith("• ")]
        assert "DCM crystal temperature" in dcm or "dcm-temp" in dcm
        assert "paged person:ana" in dcm and "acked by ben at Sat 02:00" in dcm
        assert "resolved" in dcm
        assert "STILL OPEN" in cryo and "not acknowledged" in cryo
        assert [a["check_id"] for a in digest["alarms"]] == ["cryo-temp"]
        assert digest["link"] == "https://beamwatch.example.org/log?hours=24"

        await night.restart()  # the same day's digest is not sent again
        await night.run_until("2026-01-10T08:50")
        assert len(night.digests()) == 1
        await night.run_until("2026-01-11T08:05", step=1800)  # the next morning: a new one
        assert len(night.digests()) == 2
    finally:
        await night.app.close()


async def test_a_digest_more_than_an_hour_late_is_not_sent(tmp_path, httpserver):
    night = Night(tmp_path, httpserver, "2026-01-10T09:30")  # down at 08:00
    await night.app.start()
    try:
        await night.run_until("2026-01-10T10:00")
        assert night.digests() == []
    finally:
        await night.app.close()
