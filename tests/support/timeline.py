"""Timeline tests (alertmanager's acceptance tests are the model): a real App with the
in-memory source and a fake clock, a real HTTP receiver on loopback; time is driven
by hand, one tick per second, so "at t=0 fault, one message between t=a and t=b" is
asserted without sleeping."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from beamwatch.app import App
from beamwatch.clock import FakeClock
from beamwatch.sources.soft import SoftSource


@dataclass
class Received:
    t: float  # seconds since the start of the timeline
    path: str
    body: dict


class Timeline:
    def __init__(self, tmp_path: Path, config_text: str, httpserver):
        self.clock = FakeClock()
        self.t0 = self.clock.now()
        self.server = httpserver
        self.received: list[Received] = []
        self.path = tmp_path / "bw.yaml"
        self.path.write_text(config_text.replace("{db}", str(tmp_path / "bw.db"))
                             .replace("{hook}", httpserver.url_for("")))
        self.source = SoftSource("ca", self.clock)
        self.app = App(self.path, self.clock, {"ca": self.source})
        httpserver.expect_request("/hook", method="POST").respond_with_handler(self._record)
        httpserver.expect_request("/oncall", method="POST").respond_with_handler(self._record)

    def _record(self, request):
        from werkzeug import Response

        self.received.append(Received(self.clock.now() - self.t0, request.path,
                                      json.loads(request.data)))
        return Response("ok")

    async def __aenter__(self) -> Timeline:
        await self.app.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.app.close()

    async def restart(self) -> None:
        """Stop the App and start a new one on the same store, as after a crash-free
        restart of `beamwatch run`; samples must be pushed again (a new subscription)."""
        await self.app.close()
        self.source = SoftSource("ca", self.clock)
        self.app = App(self.path, self.clock, {"ca": self.source})
        await self.app.start()

    @property
    def now(self) -> float:
        return self.clock.now() - self.t0

    def set(self, pv: str, value, **kw) -> None:
        self.source.push(pv, value, **kw)

    async def run_until(self, t: float) -> None:
        """Advance one second at a time to `t` seconds after the start."""
        await self.app.step()
        while self.now < t:
            self.clock.advance(1.0)
            await self.app.step()

    def messages(self, kind: str | None = None, path: str = "/hook") -> list[Received]:
        return [r for r in self.received if r.path == path
                and (kind is None or r.body["kind"] == kind)]
