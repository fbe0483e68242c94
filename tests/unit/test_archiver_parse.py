"""Reading the Archiver Appliance's answers (recorded ones: tests/data/archiver/README.md),
choosing what to ask for, binning for plots, and where a check's past is."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from beamwatch.api.past import bins
from beamwatch.config.schema import Config
from beamwatch.sources import archiver
from beamwatch.sources.archiver import ArchiverError, archive_of, bin_for, iso, parse, plan

DATA = Path(__file__).parent.parent / "data" / "archiver"


def load(name: str) -> list[archiver.ArchivedSample]:
    return parse((DATA / name).read_bytes(), name)


def test_a_recorded_gauge_in_millis_form_reads_every_sample_in_order():
    got = load("lcls_pressure.qw.json")
    assert len(got) == 612
    assert got[0].time == pytest.approx(1610739585.509)
    assert got[0].number == pytest.approx(0.005249832756817341)
    assert got[-1].time == pytest.approx(1610740485.535)
    assert all(a.time < b.time for a, b in zip(got, got[1:], strict=False))
    assert all(s.number is not None for s in got)


def test_secs_and_nanos_make_the_time_and_severity_status_are_kept():
    [s] = load("dls_string_event.json")
    assert s.time == pytest.approx(1507712433.235971)
    assert s.value == "2015-01-08 19:47:01 UTC"
    assert s.number is None  # a string is a value, not a number
    assert (s.severity, s.status) == (0, 0)


def test_an_enum_becomes_its_label_when_the_archiver_sent_the_labels():
    [s] = load("dls_enum_event.json")
    assert s.value == "User"  # val 4, ENUM_4 of the meta, as the CA source gives it
    assert s.has_value


def test_an_enum_without_labels_stays_its_index():
    [s] = parse('[{"meta": {"name": "MODE"}, "data": '
                '[{"secs": 10, "nanos": 0, "val": 4, "severity": 0, "status": 0}]}]')
    assert s.value == 4 and s.number == 4.0


def test_waveforms_are_values_but_not_numbers():
    got = load("dls_waveform.json")
    assert [s.value for s in got] == [[1.1, 2.0, 3.0], [3.0, 4.5, 6.0]]
    assert [s.severity for s in got] == [1, 5]
    assert all(s.has_value and s.number is None for s in got)
    chars = load("lcls_waveform.qw.json")
    assert len(chars) == 5 and isinstance(chars[0].value, list)


def test_infinity_and_null_as_the_archiver_writes_them_are_no_numbers():
    got = load("kek_infinity_null.qw.json")
    assert [s.value for s in got[1::2]] == [None, None]
    assert math.isinf(got[0].value)
    assert [s.number for s in got] == [None] * 4
    assert [s.has_value for s in got] == [True, False, True, False]  # null: no value


def test_special_severities_are_gaps_but_repeat_carries_its_value():
    got = load("built_disconnected.json")
    assert [s.severity for s in got] == [0, 1, 3904, 3872, 0, 3856, 3]
    assert [s.has_value for s in got] == [True, True, False, False, True, True, True]
    assert [s.number for s in got][:6] == [2.1e-09, 2.3e-09, None, None, 2.2e-09, 2.2e-09]
    assert got[6].number is None  # NaN, INVALID


@pytest.mark.parametrize("body", ["", "  \n", "[]", '[{"meta": {"name": "X"}, "data": []}]'])
def test_an_unknown_pv_or_an_empty_span_is_no_samples(body):
    assert parse(body, "X") == []


@pytest.mark.parametrize(("body", "says"), [
    ("<html>Tomcat error</html>", "SR:CURRENT: the archiver's answer is not JSON"),
    ('{"error": "x"}', "not a list of PVs"),
    ('[{"data": [{"val": 1}]}]', "a sample has no time"),
    ('[{"data": [{"secs": "soon", "val": 1}]}]', "time or severity is not a number"),
    ('[{"data": 5}]', "no data list"),
])
def test_a_malformed_answer_is_one_clear_error_naming_the_pv(body, says):
    with pytest.raises(ArchiverError, match=says):
        parse(body, "SR:CURRENT")


def test_times_are_asked_in_the_appliances_iso_form():
    assert iso(1764568800.25) == "2025-12-01T06:00:00.250Z"
    assert iso(0) == "1970-01-01T00:00:00.000Z"


def test_short_spans_are_raw_long_ones_a_mean_of_at_most_1500_points():
    assert bin_for(3600) is None
    assert bin_for(3601) == 60
    assert bin_for(24 * 3600) == 60
    assert bin_for(72 * 3600) == 180  # 1440 points, not the 10 Hz PV's 2.6 million
    assert 72 * 3600 / bin_for(72 * 3600) <= archiver.MAX_POINTS
    lo, hi, every = plan(1000.5, 1000.5 + 72 * 3600)
    assert lo % 180 == 0 and hi % 180 == 0 and lo <= 1000.5 and every == 180


def test_binning_keeps_min_max_last_and_marks_a_bin_ending_disconnected():
    rows = bins(load("built_disconnected.json"), 60)
    by_time = {r["time"] - 1764568800: r for r in rows}
    assert by_time[0] == {"time": 1764568800, "span": 60, "vmin": 2.1e-09, "vmax": 2.3e-09,
                          "vlast": 2.3e-09, "count": 2, "connected": True, "archived": True}
    assert by_time[60]["connected"] is False and by_time[60]["count"] == 0
    assert by_time[120]["connected"] is False
    assert by_time[180]["connected"] is True and by_time[180]["vlast"] == 2.2e-09
    assert by_time[180]["count"] == 3  # the repeat and the NaN are values too


def _config(**extra) -> Config:
    data = {"beamline": "I04",
            "sources": {"arch": {"kind": "archiver", "url": "http://aa:17665/"},
                        "old": {"kind": "archiver", "url": "http://aa2:17668/retrieval"}},
            "checks": [{"id": "ring", "pv": "SR:CURRENT"},
                       {"id": "cryo", "pva": "BL04I:CRYO", "archive": {"source": "old"}},
                       {"id": "renamed", "pv": "BL04I:NEW", "archive": {"pv": "BL04I:OLD"}},
                       {"id": "off", "pv": "X", "archive": False},
                       {"id": "web", "get": "/status", "source": "web",
                        "archive": {"pv": "BL04I:WEB"}},
                       {"id": "disk", "disk": "/data"}]}
    data["sources"]["web"] = {"kind": "http", "base_url": "http://x"}
    data.update(extra)
    return Config.model_validate(data)


def test_a_check_s_archive_is_its_own_pv_in_the_first_archiver_unless_it_says_otherwise():
    cfg = _config()
    ring = archive_of(cfg, "ring")
    assert (ring.source, ring.url, ring.pv) == ("arch", "http://aa:17665/retrieval",
                                                "SR:CURRENT")
    cryo = archive_of(cfg, "cryo")
    assert (cryo.source, cryo.url, cryo.pv) == ("old", "http://aa2:17668/retrieval",
                                                "BL04I:CRYO")
    assert archive_of(cfg, "renamed").pv == "BL04I:OLD"
    assert archive_of(cfg, "web").pv == "BL04I:WEB"
    assert archive_of(cfg, "off") is None
    assert archive_of(cfg, "disk") is None  # no PV to ask for
    assert archive_of(_config(sources={}), "ring") is None


def test_points_for_a_check_without_an_archive_asks_nobody():
    assert archiver.points(_config(), "off", 0, 3600) == []
    assert archiver.points(_config(), "ring", 3600, 3600) == []


def test_an_archiver_url_with_a_password_is_never_shown():
    cfg = Config.model_validate({
        "beamline": "I04",
        "sources": {"arch": {"kind": "archiver", "url": "http://aa:s3cret@127.0.0.1:9/"}},
        "checks": [{"id": "ring", "pv": "SR:CURRENT"}]})
    archive = archive_of(cfg, "ring")
    with pytest.raises(ArchiverError) as info:
        archiver.fetch(archive, 0, 60)  # nothing listens on port 9
    assert str(info.value).startswith(
        "archiver http://127.0.0.1:9/retrieval/data/getData.json unreachable for SR:CURRENT")
    assert "s3cret" not in str(info.value)
