"""Beamline mode: from the PV, overridden by hand until an expiry, scheduled, and the MODE stage."""

import pytest

from beamwatch.config.schema import ModesConfig
from beamwatch.engine.modes import (
    ModeChange,
    ModeMuter,
    ModeProblem,
    ModeSource,
    ModeTracker,
    ScheduledMode,
)
from beamwatch.engine.mute import Alert
from beamwatch.engine.silences import RecurringWindow
from beamwatch.model import MuteReason

NAMES = ["user", "unattended", "maintenance", "shutdown"]


@pytest.fixture
def modes():
    cfg = ModesConfig(names=NAMES, default="user", from_pv="BL04I-CS-MODE:MODE",
                      map={"0": "user", "1": "unattended", "2": "maintenance", "3": "shutdown"})
    return ModeTracker.from_config(cfg, now=0)


@pytest.mark.parametrize("raw,mode", [
    ("1", "unattended"), (1, "unattended"), (1.0, "unattended"),
    ("shutdown", "shutdown"), ("Maintenance", "maintenance"),
    ("7", None), ("Beam dump", None), (1.5, None),
])
def test_resolve_raw_values(modes, raw, mode):
    assert modes.resolve(raw) == mode


def test_pv_changes_the_mode_and_says_so(modes):
    assert modes.mode(0) == "user" and modes.status(0).source == ModeSource.DEFAULT
    [change] = modes.on_pv(1, 10)
    assert change == ModeChange(10, "user", "unattended", ModeSource.PV, None,
                                "mode PV reads '1'")
    assert modes.on_pv(1, 11) == []  # same value: nothing to log


def test_unknown_pv_value_keeps_the_mode_and_is_reported_once(modes):
    modes.on_pv(3, 10)
    [problem] = modes.on_pv(42, 20)
    assert isinstance(problem, ModeProblem)
    assert problem.kept == "shutdown"
    assert problem.detail == ("mode PV value '42' names no mode (known: 0, 1, 2, 3); "
                              "keeping mode shutdown")
    assert modes.on_pv(42, 21) == []
    assert modes.mode(21) == "shutdown"
    [gone] = modes.on_pv(None, 30, connected=False)
    assert gone.detail == "mode PV disconnected; keeping mode shutdown"
    assert modes.on_pv(None, 31, connected=False) == []
    [back] = modes.on_pv(0, 40)
    assert (back.old, back.new, back.source) == ("shutdown", "user", ModeSource.PV)


def test_override_wins_until_it_expires_back_to_the_pv_mode(modes):
    modes.on_pv(0, 0)
    [set_] = modes.set_override("maintenance", author="ana", reason="cryo refill", now=100,
                                until=3700)
    assert (set_.old, set_.new, set_.source, set_.author) == (
        "user", "maintenance", ModeSource.OVERRIDE, "ana")
    assert modes.on_pv(1, 200) == []  # the PV moves underneath: the override still wins
    assert modes.mode(200) == "maintenance"
    assert modes.status(200).override.author == "ana"
    assert modes.tick(3699) == []
    assert modes.mode(3700) == "unattended"  # the query is right even before tick
    [expiry] = modes.tick(3701)
    assert (expiry.old, expiry.new, expiry.source, expiry.time) == (
        "maintenance", "unattended", ModeSource.EXPIRY, 3700)
    assert expiry.reason == "override 'maintenance' (cryo refill) expired; mode from pv"
    assert modes.tick(3800) == []


def test_override_cleared_early(modes):
    modes.set_override("shutdown", author="ana", reason="dump", now=0, until=1000)
    [cleared] = modes.clear_override(author="ben", now=10)
    assert (cleared.old, cleared.new, cleared.author) == ("shutdown", "user", "ben")
    assert modes.clear_override(author="ben", now=11) == []


@pytest.mark.parametrize("kw,message", [
    (dict(mode="holiday"), "unknown mode 'holiday'"),
    (dict(author=""), "needs an author and a reason"),
    (dict(until=50), "must end in the future"),
])
def test_bad_overrides(modes, kw, message):
    args = dict(mode="shutdown", author="ana", reason="r", now=100, until=200) | kw
    mode = args.pop("mode")
    with pytest.raises(ValueError, match=message):
        modes.set_override(mode, **args)


def test_schedule_when_there_is_no_pv():
    tuesday_8 = 1772524800.0  # 2026-03-03 08:00 UTC, a Tuesday
    window = RecurringWindow(8 * 3600, cron="0 8 * * 2")
    modes = ModeTracker(NAMES, "user", schedule=[ScheduledMode("maintenance", window)],
                        now=tuesday_8 - 60)
    assert modes.mode(tuesday_8 - 60) == "user"
    [opened] = modes.tick(tuesday_8)
    assert (opened.new, opened.source) == ("maintenance", ModeSource.SCHEDULE)
    [closed] = modes.tick(tuesday_8 + 8 * 3600)
    assert (closed.new, closed.source) == ("user", ModeSource.DEFAULT)


def test_mode_muter():
    modes = ModeTracker(NAMES, "user")
    muter = ModeMuter({"data-arriving": ["unattended"], "ring-current": None}, modes)
    assert muter.reason == MuteReason.MODE
    assert muter.mutes(Alert("data-arriving"), 0) == "not active in mode user"
    assert muter.mutes(Alert("data-arriving", mode="unattended"), 0) is None
    assert muter.mutes(Alert("data-arriving", mode="shutdown"), 0) == (
        "not active in mode shutdown")
    assert muter.mutes(Alert("ring-current", mode="shutdown"), 0) is None
    assert muter.mutes(Alert("unknown-check"), 0) is None
