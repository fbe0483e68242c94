"""The mute pipeline: fixed stage order, first reason recorded, every reason explainable."""

import pytest

from beamwatch.engine.deps import DependencyGraph, DependencyMuter
from beamwatch.engine.flapping import FlapDetector, FlapMuter
from beamwatch.engine.modes import ModeMuter, ModeTracker
from beamwatch.engine.mute import Alert, Mute, MutePipeline, Muter
from beamwatch.engine.silences import (
    MaintenanceWindow,
    RecurringWindow,
    ScheduleMuter,
    Silence,
    SilenceMuter,
)
from beamwatch.model import MuteReason, Severity

R = MuteReason


class Always:
    def __init__(self, reason, detail=None):
        self.reason = reason
        self.detail = detail or f"{reason.lower()} says so"
        self.asked = 0

    def mutes(self, alert, now):
        self.asked += 1
        return self.detail


class Never:
    def __init__(self, reason):
        self.reason = reason

    def mutes(self, alert, now):
        return None


def test_stages_run_in_the_fixed_order_whatever_order_they_are_given():
    given = [Always(R.FLAPPING), Always(R.DEPENDENCY), Always(R.SILENCE), Always(R.SCHEDULE),
             Always(R.MODE)]
    pipe = MutePipeline(given)
    assert [s.reason for s in pipe.stages] == list(MutePipeline.ORDER)
    assert pipe.decide(Alert("x"), 0) == Mute(R.MODE, "mode says so")
    assert [s.asked for s in given] == [0, 0, 0, 0, 1]  # stops at the first


@pytest.mark.parametrize("muting,expected", [
    ([], None),
    ([R.FLAPPING], R.FLAPPING),
    ([R.DEPENDENCY, R.FLAPPING], R.DEPENDENCY),
    ([R.SILENCE, R.DEPENDENCY], R.SILENCE),
    ([R.SCHEDULE, R.SILENCE], R.SCHEDULE),
    ([R.MODE, R.SCHEDULE, R.SILENCE, R.DEPENDENCY, R.FLAPPING], R.MODE),
])
def test_first_muting_stage_names_the_reason(muting, expected):
    stages = [Always(r) if r in muting else Never(r) for r in MutePipeline.ORDER]
    decision = MutePipeline(stages).decide(Alert("x"), 0)
    assert (decision.reason if decision else None) == expected


def test_explain_lists_every_reason():
    pipe = MutePipeline([Always(R.SILENCE, "silenced by ana"), Never(R.MODE),
                         Always(R.DEPENDENCY, "root cause: fe-vacuum")])
    assert [str(m) for m in pipe.explain(Alert("x"), 0)] == [
        "SILENCE: silenced by ana", "DEPENDENCY: root cause: fe-vacuum"]


def test_unknown_reason_is_refused():
    class Odd:
        reason = "LUNCH"

        def mutes(self, alert, now):
            return None

    with pytest.raises(ValueError, match="unknown reason"):
        MutePipeline([Odd()])


def test_label_set_built_ins_win():
    alert = Alert("fe-vacuum", group="vacuum", labels={"check": "spoof", "area": "fe"},
                  severity=Severity.MINOR, mode="user")
    assert alert.label_set() == {"check": "fe-vacuum", "group": "vacuum", "area": "fe",
                                 "severity": "minor", "mode": "user"}


def test_the_real_stages_together():
    t0 = 1772524800.0  # Tuesday 2026-03-03 08:00 UTC
    modes = ModeTracker(["user", "shutdown"], "user")
    graph = DependencyGraph({"fe-shutter": ["fe-vacuum"]})
    failing = {"fe-vacuum": t0}
    flaps = FlapDetector()
    silences = SilenceMuter([Silence("s1", ("check=fe-shutter",), t0, t0 + 3600, "ana",
                                     "replacing gauge")])
    window = MaintenanceWindow("md", RecurringWindow(3600, cron="0 8 * * 2"),
                               ("group=machine",), "machine development")
    stages = [FlapMuter(flaps), DependencyMuter(graph, failing), silences,
              ScheduleMuter([window]), ModeMuter({"data-arriving": ["shutdown"]}, modes)]
    assert all(isinstance(s, Muter) for s in stages)
    pipe = MutePipeline(stages)

    def why(check, group="default", now=t0 + 60):
        m = pipe.decide(Alert(check, group=group), now)
        return str(m) if m else None

    assert why("data-arriving") == "MODE: not active in mode user"
    assert why("ring-current", "machine") == (
        "SCHEDULE: maintenance window md until 09:00 UTC: machine development")
    assert why("fe-shutter") == "SILENCE: silenced by ana until 09:00 UTC: replacing gauge"
    assert why("fe-shutter", now=t0 + 3600) == "DEPENDENCY: root cause: fe-vacuum"
    assert why("fe-vacuum") is None


def test_alert_of_a_configured_check():
    from beamwatch.config.schema import CheckConfig

    cfg = CheckConfig(id="fe-vacuum", pv="FE04I-VA-GAUGE-01:P", group="vacuum",
                      labels={"area": "fe"})
    alert = Alert.of(cfg, Severity.MAJOR, 100.0, mode="user")
    assert alert == Alert("fe-vacuum", "vacuum", {"area": "fe"}, Severity.MAJOR, 100.0, "user")
