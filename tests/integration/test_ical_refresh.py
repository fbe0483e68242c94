"""iCalendar feeds in a running engine: fetched off the event loop, refreshed every
`ical_refresh`, the last good copy kept when the server fails. A real App (in-memory
source, SQLite, fake clock) against a real HTTP server on loopback serving the feed."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime

import pytest
from typer.testing import CliRunner
from werkzeug import Response

from beamwatch import cli
from beamwatch.app import App
from beamwatch.clock import FakeClock
from beamwatch.sources.soft import SoftSource

pytestmark = pytest.mark.integration

ICS = """BEGIN:VCALENDAR
VERSION:2.0
PRODID:-//test//EN
BEGIN:VEVENT
UID:oncall-ana@test
DTSTAMP:20260101T000000Z
DTSTART:20260101T000000Z
DTEND:20280101T000000Z
SUMMARY:On call: ana
END:VEVENT
END:VCALENDAR
"""

CONFIG = """
beamline: I04
storage: {url: "sqlite:///DB"}
checks:
  - id: dcm-temp
    pv: BL04I-MO-DCM-01:TEMP1
    above: {major: 140}
people:
  ana: {webhook: "https://h/ana"}
  ben: {webhook: "https://h/ben"}
teams:
  mx:
    members: [ana, ben]
    ical: FEED
    ical_refresh: 15m
    rota: {every: 1w, start: 2026-01-05T09:00, order: [ben]}
routes:
  - to: ["oncall:mx"]
"""


class Feed:
    """The calendar server: serves ICS, or fails, or holds each request until released."""

    def __init__(self, httpserver):
        self.status = 200
        self.hold = False
        self.requested = threading.Event()
        self.release = threading.Event()
        self.answered = threading.Event()
        httpserver.expect_request("/oncall.ics").respond_with_handler(self._serve)
        self.url = httpserver.url_for("/oncall.ics")

    def _serve(self, request):
        self.requested.set()
        if self.hold:
            self.release.wait(10)  # a slow calendar server
        self.answered.set()
        if self.status != 200:
            return Response("calendar backend down", status=self.status)
        return Response(ICS, content_type="text/calendar")


@pytest.fixture
def cache(tmp_path, monkeypatch):
    path = tmp_path / "cache"
    monkeypatch.setenv("BEAMWATCH_CACHE_DIR", str(path))
    return path


@pytest.fixture
async def engine(tmp_path, httpserver, cache):
    feed = Feed(httpserver)
    path = tmp_path / "bw.yaml"
    path.write_text(CONFIG.replace("DB", str(tmp_path / "bw.db")).replace("FEED", feed.url))
    clock = FakeClock()
    app = App(path, clock, {"ca": SoftSource("ca", clock)})
    await app.start()
    yield app, feed, clock
    feed.release.set()
    await app.close()


def on_call(app: App):
    return app.decider.router.oncall.who("mx", app.clock.now())


async def test_a_slow_calendar_server_never_holds_up_the_engine(engine):
    app, feed, clock = engine
    feed.hold = True
    stop = asyncio.Event()
    refresher = asyncio.create_task(app.calendars.run(stop))
    assert await asyncio.to_thread(feed.requested.wait, 10)
    # the fetch is in flight: ticks, a reload and a page all go on meanwhile
    for _ in range(3):
        clock.advance(1.0)
        await app.step()
    decider = app.decider
    app.reload()
    assert app.decider is not decider  # the reload took (same feeds)
    assert on_call(app).person == "ben"  # the rota until the calendar arrives
    assert "not loaded yet" in on_call(app).reason
    assert not feed.answered.is_set()  # all of that happened while the server held on
    feed.release.set()
    await asyncio.to_thread(feed.answered.wait, 10)
    stop.set()
    await refresher  # its last round finishes the read in flight
    assert (on_call(app).person, on_call(app).source) == ("ana", "ical")


async def test_a_feed_that_starts_failing_keeps_the_last_good_rota(engine, tmp_path):
    app, feed, clock = engine
    await app.calendars.refresh()
    assert (on_call(app).person, on_call(app).source) == ("ana", "ical")
    good_at = clock.now()
    feed.status = 503
    feed.requested.clear()
    await app.calendars.refresh()
    assert not feed.requested.is_set()  # not due yet: read every 15 minutes
    clock.advance(15 * 60)
    await app.calendars.refresh()
    assert feed.requested.is_set()
    a = on_call(app)
    assert (a.person, a.source) == ("ana", "ical")  # the last good copy, not the rota
    assert "stale since" in a.reason and "503" in a.reason
    assert app.calendars.holder.get("mx").read_at == good_at
    # `beamwatch oncall`, a process of its own, fails to fetch too and says so
    # at the engine's (fake) time: the feed's event covers 2026-2027, and "now" on the
    # machine running the test may be any date
    at = datetime.fromtimestamp(clock.now(), UTC).isoformat()
    res = CliRunner().invoke(cli.app, ["oncall", "-c", str(tmp_path / "bw.yaml"), "--at", at])
    assert res.exit_code == 0, res.output
    assert "mx: ana (ical" in res.output
    assert "stale since" in res.output and "503" in res.output
    ours = [line for line in res.output.splitlines() if "werkzeug" not in line]
    assert not [line for line in ours if "/oncall.ics" in line]  # a URL can be a password
    # the server comes back: the next refresh reads it and the note goes
    feed.status = 200
    clock.advance(15 * 60)
    await app.calendars.refresh()
    assert "stale" not in on_call(app).reason


async def test_a_secret_calendar_url_stays_out_of_the_log(engine, caplog):
    app, feed, clock = engine
    feed.status = 500
    with caplog.at_level("WARNING", logger="beamwatch.calendars"):
        await app.calendars.refresh()
    assert "team mx unusable" in caplog.text and "500" in caplog.text
    assert "/oncall.ics" not in caplog.text
