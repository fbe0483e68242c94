"""SIGHUP with a changed `modes:` keeps the mode the PV gave (Channel Access does not send an
unchanged value again) and maps its last value through the new `map:`. A real App (in-memory
source, SQLite) on a fake clock, reloaded from its file as SIGHUP does."""

from __future__ import annotations

import pytest

from beamwatch.app import App
from beamwatch.clock import FakeClock
from beamwatch.engine.modes import ModeSource
from beamwatch.model import Severity
from beamwatch.sources.soft import SoftSource
from beamwatch.store.noise import NoiseStore

MODE_PV = "BL04I-CS-MODE:MODE"
GAUGE = "BL04I-VA-GAUGE-01:P"

CONFIG = """
beamline: I04
storage: {url: "sqlite:///DB"}
modes:
  names: [user, unattended, shutdown]
  default: user
  from_pv: BL04I-CS-MODE:MODE
  map: {"0": user, "1": unattended, "2": shutdown}
checks:
  - id: gauge
    pv: BL04I-VA-GAUGE-01:P
    above: {major: 5.0e-7}
    by_mode:
      shutdown: {above: {major: 1.0e-4}}   # vented for an intervention: only a leak matters
"""


class Beamline:
    def __init__(self, tmp_path):
        self.clock = FakeClock()
        self.path = tmp_path / "bw.yaml"
        self.path.write_text(CONFIG.replace("DB", str(tmp_path / "bw.db")))
        self.source = SoftSource("ca", self.clock)
        self.app = App(self.path, self.clock, {"ca": self.source})

    async def tick(self, seconds: int = 1) -> None:
        for _ in range(seconds):
            self.clock.advance(1.0)
            await self.app.step()

    def reload(self, old: str, new: str) -> None:
        text = self.path.read_text()
        assert old in text
        self.path.write_text(text.replace(old, new))
        self.app.reload()

    @property
    def mode(self):
        return self.app.decider.noise.modes.status(self.clock.now())


@pytest.fixture
async def beamline(tmp_path):
    b = Beamline(tmp_path)
    await b.app.start()
    b.source.push(MODE_PV, 1)  # the PV says: unattended
    await b.tick()
    assert (b.mode.mode, b.mode.source) == ("unattended", ModeSource.PV)
    yield b
    await b.app.close()


async def test_a_new_mode_name_keeps_the_mode_the_pv_gave(beamline):
    beamline.reload("names: [user, unattended, shutdown]",
                    "names: [user, unattended, shutdown, maintenance]")
    await beamline.tick(3)
    assert beamline.app.config.modes.names[-1] == "maintenance"  # the reload took
    assert (beamline.mode.mode, beamline.mode.source) == ("unattended", ModeSource.PV)
    assert beamline.app.decider.mode(beamline.clock.now()) == "unattended"


async def test_a_changed_map_maps_the_last_pv_value_again(beamline):
    beamline.source.push(GAUGE, 1e-6)  # above the normal limit, fine when vented
    await beamline.tick()
    assert beamline.app.engine.runtimes["gauge"].logic.state.severity == Severity.MAJOR
    beamline.reload('"1": unattended', '"1": shutdown')
    await beamline.tick(3)
    assert (beamline.mode.mode, beamline.mode.source) == ("shutdown", ModeSource.PV)
    # the checks follow: the shutdown limits apply without the PV changing
    beamline.source.push(GAUGE, 1.1e-6)
    await beamline.tick()
    assert beamline.app.engine.runtimes["gauge"].logic.state.severity == Severity.OK
    [change] = [c for c in NoiseStore(beamline.app.store).mode_changes()
                if c.new == "shutdown"]
    assert (change.old, change.source) == ("unattended", ModeSource.PV)


async def test_a_value_the_new_map_does_not_name_keeps_the_last_good_mode(beamline):
    beamline.reload('"1": unattended, ', '')
    await beamline.tick(3)
    assert "1" not in beamline.app.config.modes.map
    assert (beamline.mode.mode, beamline.mode.source) == ("unattended", ModeSource.PV)


async def test_an_override_survives_a_reload_that_changes_modes(beamline):
    now = beamline.clock.now()
    NoiseStore(beamline.app.store).set_override("shutdown", author="ana", reason="venting",
                                                now=now, until=now + 3600)
    await beamline.tick()
    before = len(NoiseStore(beamline.app.store).mode_changes())
    beamline.reload("default: user", "default: unattended")
    await beamline.tick(3)
    assert (beamline.mode.mode, beamline.mode.source) == ("shutdown", ModeSource.OVERRIDE)
    assert len(NoiseStore(beamline.app.store).mode_changes()) == before  # nothing to say
