"""`get` in Slack reads a PV now, like caget, from inside `beamwatch run`: a real soft IOC
on loopback, read through the process's own libca context."""

from __future__ import annotations

import aioca
import pytest

from beamwatch.app import App
from beamwatch.slack.reading import read_now
from beamwatch.sources.soft import SoftSource
from tests.support.ioc import Ioc, require_epicscorelibs
from tests.support.sources import SOURCE_DB

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def ioc():
    require_epicscorelibs()
    with Ioc(SOURCE_DB) as running:
        yield running


@pytest.fixture
async def app(tmp_path, ioc):
    path = tmp_path / "bw.yaml"
    path.write_text(f"""
beamline: I04
storage: {{url: "sqlite:///{tmp_path / 'bw.db'}"}}
checks:
  - {{id: det-temp, pv: "{ioc.pv('temp')}", above: {{minor: 50, major: 100}}}}
  - {{id: collector, heartbeat: 1h}}
""")
    application = App(path, sources={"ca": SoftSource("ca"),
                                     "heartbeat": SoftSource("heartbeat")})
    yield application
    application.store.close()
    aioca.purge_channel_caches()


async def test_a_check_on_channel_access_is_read_now_with_units_and_severity(app, ioc):
    await aioca.caput(ioc.pv("temp"), 63.5, wait=True)
    r = await read_now(app, "det-temp")
    assert (r.name, r.value, r.units, r.severity) == (f"det-temp ({ioc.pv('temp')})", "63.5",
                                                       "C", "MINOR")
    assert r.time is not None and "read now" in r.source


async def test_any_pv_name_is_read_and_an_enum_shows_its_label(app, ioc):
    r = await read_now(app, ioc.pv("shutter"))
    assert (r.value, r.severity) == ("Open", "OK")


async def test_a_pv_nobody_serves_says_so_within_seconds(app):
    with pytest.raises(LookupError, match="no IOC answered within 2s"):
        await read_now(app, "BL04I-NOBODY-01:HOME")


async def test_a_check_with_no_value_yet_and_garbage_are_lookup_errors(app):
    with pytest.raises(LookupError, match="has had no value yet"):
        await read_now(app, "collector")
    with pytest.raises(LookupError, match="neither a check nor a PV name"):
        await read_now(app, "rm -rf /; `reboot`")
