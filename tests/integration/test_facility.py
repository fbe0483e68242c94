"""A facility: two beamlines with the same check ids share one PostgreSQL database,
each in its own schema. Neither sees the other's checks, transitions, incidents or
pages; a config can never open another beamline's store; `beamwatch facility --json`
shows both, with who is on call and whether each monitor is alive.

Real Apps (fake clocks, soft sources) on a throwaway PostgreSQL database; the
pages go to a real HTTP server on loopback; the facility view is the real CLI."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, text
from typer.testing import CliRunner

from beamwatch import cli
from beamwatch.app import App
from beamwatch.cli.common import out
from beamwatch.clock import FakeClock
from beamwatch.sources.soft import SoftSource
from beamwatch.store import Store
from beamwatch.store.noise import NoiseStore

pytestmark = pytest.mark.integration



def beamwatch(*args: str):
    """The real CLI, in this process (a new one costs seconds of imports)."""
    return CliRunner().invoke(cli.app, list(args))

CONFIG = """
beamline: {beamline}
storage: {{url: "{url}"}}
web: {{listen: "off"}}
monitor: {{checks: false}}
checks:
  - {{id: dcm-temp, pv: "DCM:T", above: {{major: 140}}}}
  - {{id: cryo-temp, pv: "CRYO:T", above: {{major: 110}}}}
people:
  {person}: {{name: {name}, webhook: "{hook}"}}
teams:
  mx: {{members: [{person}], rota: {{start: "2026-01-01T08:00", order: [{person}]}}}}
routes:
  - to: [oncall:mx]
"""


class Beamline:
    """One beamline's App on the shared database, its pages kept by path."""

    def __init__(self, tmp_path: Path, url: str, httpserver, beamline: str, person: str,
                 name: str, now: float):
        self.path = tmp_path / f"{beamline}.yaml"
        self.got: list[dict] = []
        hook = f"/{person}"
        self.path.write_text(CONFIG.format(beamline=beamline, url=url, person=person,
                                           name=name, hook=httpserver.url_for(hook)))
        httpserver.expect_request(hook, method="POST").respond_with_handler(self._record)
        self.clock = FakeClock(now)
        self.source = SoftSource("ca", self.clock)
        self.app = App(self.path, self.clock, {"ca": self.source})

    def _record(self, request):
        from werkzeug import Response

        self.got.append(json.loads(request.data))
        return Response("ok")

    def pages(self) -> list[dict]:
        return [m for m in self.got if m["kind"] == "alarm"]


@pytest.fixture
def two(tmp_path, pg_url, httpserver):
    now = time.time()
    i03 = Beamline(tmp_path, pg_url, httpserver, "I03", "ana", "Ana Lima", now)
    i04 = Beamline(tmp_path, pg_url, httpserver, "I04-1", "ben", "Ben Ode", now)
    yield i03, i04
    # the database (and both schemas in it) is dropped by pg_url


async def test_two_beamlines_on_one_database_never_see_each_others_checks_or_pages(two, pg_url):
    i03, i04 = two
    for b in two:
        await b.app.start()
    try:
        for b in two:
            b.source.push("DCM:T", 20.0)
            b.source.push("CRYO:T", 80.0)
            await b.app.step()
        i04.source.push("DCM:T", 150.0)  # the same check id fails on I04-1 only
        for b in two:
            b.clock.t += 5
            await b.app.step()

        [page] = i04.pages()
        assert page["check_ids"] == ["dcm-temp"]
        assert i03.pages() == []  # ana (on call for I03) is never paged for I04-1
        s03, s04 = i03.app.store, i04.app.store
        assert s04.state("dcm-temp").severity.name == "MAJOR"
        assert set(s03.severities().values()) <= {0}  # nothing of I04-1's alarm
        assert [t.transition.check_id for t in s04.transitions()
                if t.transition.new.name == "MAJOR"] == ["dcm-temp"]
        assert [t for t in s03.transitions() if t.transition.new.name != "OK"] == []
        assert [i.root for i in NoiseStore(s04).open_incidents()] == ["dcm-temp"]
        assert NoiseStore(s03).open_incidents() == []
        assert s03.count("notifications") == 0 and s04.count("notifications") >= 1

        # an ack queued on I03 for the same check id reaches I03's engine, not I04-1's
        s03.queue_command("ack", {"check_id": "dcm-temp"}, "ana", i03.clock.now())
        for b in two:
            await b.app.step()
        assert s04.state("dcm-temp").acked is False

        # each schema holds its own tables (and its own alembic_version); public none
        eng = create_engine(pg_url)
        with eng.connect() as conn:
            tables = dict(conn.execute(text(
                "SELECT table_schema, count(*) FROM information_schema.tables "
                "WHERE table_name IN ('transitions', 'alembic_version', 'store_meta') "
                "GROUP BY table_schema")).all())
        eng.dispose()
        assert tables == {"i03": 3, "i04_1": 3}
    finally:
        for b in two:
            await b.app.close()


def test_a_config_cannot_open_another_beamlines_store(tmp_path, pg_url):
    Store(pg_url, schema="i04_1", beamline="I04-1").close()
    # `I04_1` derives the same schema as `I04-1`: refused, naming both
    cfg = tmp_path / "bw.yaml"
    cfg.write_text(f'beamline: I04_1\nstorage: {{url: "{pg_url}"}}\nweb: {{listen: "off"}}\n')
    done = beamwatch("status", "-c", str(cfg))
    assert done.exit_code == 1
    [line] = done.stderr.strip().splitlines()
    assert "belongs to beamline 'I04-1', not 'I04_1'" in line and "schema i04_1" in line
    assert "Traceback" not in done.stderr
    # with its own schema it runs beside it
    cfg.write_text(f'beamline: I04_1\nstorage: {{url: "{pg_url}", schema: i04_1b}}\n'
                   f'web: {{listen: "off"}}\n')
    done = beamwatch("status", "-c", str(cfg), "--json")
    assert done.exit_code == 0, done.stderr
    assert json.loads(done.stdout)["beamline"] == "I04_1"


async def test_facility_shows_each_beamlines_worst_state_incidents_oncall_and_monitor(
        two, pg_url, tmp_path, monkeypatch):
    i03, i04 = two
    i03.clock.t -= 120  # I03's monitor stopped two minutes ago: its last beat is that old
    for b in two:
        await b.app.start()
    try:
        for b in two:
            b.source.push("DCM:T", 20.0)
            b.source.push("CRYO:T", 80.0)
            await b.app.step()
        i04.source.push("CRYO:T", 120.0)
        for b in two:
            b.clock.t += 5
            await b.app.step()
            await b.app._beat()
            await b.app._publish_oncall()
    finally:
        for b in two:
            await b.app.close()

    fac = tmp_path / "facility.yaml"
    fac.write_text(f'facility: Diamond MX\nstorage: {{url: "{pg_url}"}}\n')
    done = beamwatch("facility", "-c", str(fac), "--json")
    assert done.exit_code == 0, done.stderr
    view = json.loads(done.stdout)
    assert view["facility"] == "Diamond MX"
    rows = {r["beamline"]: r for r in view["beamlines"]}
    assert sorted(rows) == ["I03", "I04-1"]
    assert (rows["I03"]["worst"], rows["I03"]["alarms"], rows["I03"]["incidents"]) == ("OK", 0, [])
    assert rows["I04-1"]["worst"] == "MAJOR" and rows["I04-1"]["alarms"] == 1
    assert [i["root"] for i in rows["I04-1"]["incidents"]] == ["cryo-temp"]
    assert [(o["team"], o["name"]) for o in rows["I03"]["oncall"]] == [("mx", "Ana Lima")]
    assert [(o["team"], o["name"]) for o in rows["I04-1"]["oncall"]] == [("mx", "Ben Ode")]
    assert rows["I04-1"]["monitor_alive"] is True
    assert rows["I03"]["monitor_alive"] is False  # stopped: shown as down

    # the table for people says the same, and a listed beamline with no store is said so
    fac.write_text(f'facility: Diamond MX\nstorage: {{url: "{pg_url}"}}\n'
                   f'beamlines: [I03, I04-1, I24]\n')
    monkeypatch.setattr(out, "width", 200)
    done = beamwatch("facility", "-c", str(fac))
    assert done.exit_code == 0, done.stderr
    lines = done.stdout.splitlines()
    i03_line = next(line for line in lines if "│ I03 " in line)
    assert "MONITOR DOWN" in i03_line and "mx: Ana Lima" in i03_line
    assert "cryo-temp (MAJOR" in next(line for line in lines if "│ I04-1 " in line)
    assert "no beamwatch store" in next(line for line in lines if "│ i24 " in line)

    # `beamwatch facility serve`: the same as a page and as JSON, until SIGTERM
    fac.write_text(f'facility: Diamond MX\nstorage: {{url: "{pg_url}"}}\n'
                   f'web: {{listen: "127.0.0.1:0"}}\n')
    proc = subprocess.Popen([str(Path(sys.executable).parent / "beamwatch"), "facility",
                             "serve", "-c", str(fac)], stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stderr.readline()
        url = re.search(r"http://127\.0\.0\.1:\d+", line).group(0)
        api = httpx.get(f"{url}/api/facility", timeout=30).json()
        assert {r["beamline"]: r["worst"] for r in api["beamlines"]} == {
            "I03": "OK", "I04-1": "MAJOR"}
        page = httpx.get(url, timeout=30)
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]
        assert "MONITOR DOWN" in page.text and "cryo-temp (MAJOR" in page.text
        assert "Ben Ode" in page.text
    finally:
        proc.terminate()
        rest = proc.communicate(timeout=30)[1]
    assert proc.returncode == 0 and "Traceback" not in rest


def test_a_store_from_before_schemas_is_said_and_can_be_kept(pg_url, caplog):
    old = Store(pg_url)  # beamwatch 0.1: the tables in public
    old.queue_command("ack", {"check_id": "dcm-temp"}, "ana", 1.0)
    old.close()
    Store(pg_url, schema="i04", beamline="I04").close()  # the new default: empty
    assert "a beamwatch store exists in schema public" in caplog.text
    assert "set storage.schema: public" in caplog.text
    kept = Store(pg_url, schema="public", beamline="I04")  # storage.schema: public
    assert [c.verb for c in kept.queued_commands()] == ["ack"]
    kept.close()
