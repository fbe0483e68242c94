"""The human-load report (ISA-18.2 / EEMUA 191 metrics)."""

import json

from beamwatch.engine.report import Page, load_report, peak_in_window
from beamwatch.model import MuteReason, Severity, Transition

OK, MAJOR = Severity.OK, Severity.MAJOR


def tr(check, t, old, new, muted=None):
    return Transition(check, t, old, new, new, False, None, "", "evaluation", muted=muted)


def test_peak_in_window():
    assert peak_in_window([]) == 0
    assert peak_in_window([0, 100, 599, 600, 1200]) == 3
    assert peak_in_window([0, 60, 120], 60) == 1


def test_report():
    day = 86400
    trs = []
    for i in range(4):  # a chattering check: 4 activations within a minute
        trs += [tr("dcm-temp", 1000 + 15 * i, OK, MAJOR), tr("dcm-temp", 1005 + 15 * i, MAJOR, OK)]
    trs += [tr("fe-vacuum", 2000, OK, MAJOR),
            tr("fe-shutter", 2001, OK, MAJOR, MuteReason.DEPENDENCY),
            tr("fe-shutter", 3000, MAJOR, OK)]
    trs += [tr("old-gauge", 0, OK, MAJOR)]  # never clears: stale
    trs += [tr("fe-vacuum", 2 * day, MAJOR, OK)]  # active for more than a day
    pages = [Page(1000, "ana", "dcm-temp"), Page(2000, "ana", "fe-vacuum"), Page(5000, "ben")]
    rep = load_report(trs, pages, start=0, end=2 * day + 1)
    assert rep.alarms == 7
    assert rep.muted == {"DEPENDENCY": 1}
    assert rep.peak_alarms_10min == 4
    assert rep.rating == "acceptable"
    assert [(c.check_id, c.peak_per_minute) for c in rep.chattering] == [("dcm-temp", 4)]
    assert [(s.check_id, s.still_active) for s in rep.stale] == [
        ("old-gauge", True), ("fe-vacuum", False)]
    assert rep.most_frequent[0].check_id == "dcm-temp" and rep.most_frequent[0].count == 4
    assert rep.top10_share == 1.0
    assert [(p.person, p.pages, p.peak_10min) for p in rep.people] == [("ana", 2, 1), ("ben", 1, 1)]
    assert rep.pages == 3 and rep.peak_pages_10min == 1
    assert json.loads(rep.to_json())["people"][0]["person"] == "ana"


def test_flood():
    trs = [tr(f"c{i}", 100 + i, OK, MAJOR) for i in range(30)]
    rep = load_report(trs, [], start=0, end=3600)
    assert rep.flood_periods == 1 and rep.flood_share == round(1 / 6, 4)
    assert rep.rating == "overloaded"
    assert load_report([], []).alarms == 0
