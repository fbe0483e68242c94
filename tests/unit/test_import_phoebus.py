"""`beamwatch import phoebus` on the Phoebus project's own example configurations and on
small files for each rule: every PV is a check or a listed reason, and the result loads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from beamwatch.cli import app
from beamwatch.config import load_config
from beamwatch.importers.phoebus import import_file

DATA = Path(__file__).parent.parent / "data" / "phoebus"
EXAMPLES = sorted(DATA.glob("*.xml"))


def pv_names(path: Path) -> list[str]:
    """Every <pv name=...> in the file, the way a reader of the XML would count them."""
    import xml.etree.ElementTree as ET

    return [el.get("name") for el in ET.parse(path).iter("pv")]


def loads(tmp_path: Path, text: str):
    path = tmp_path / "imported.yaml"
    path.write_text(text)
    return load_config(path)


@pytest.mark.parametrize("example", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_every_pv_of_a_real_example_is_a_check_or_a_listed_reason(example, tmp_path):
    result = import_file(example)
    assert sorted(p.pv for p in result.pvs) == sorted(pv_names(example))
    for pv in result.pvs:
        assert pv.check is not None or any(n.what == "not imported" for n in pv.notes), pv
    config = loads(tmp_path, result.yaml())
    imported = {c.id: c for c in config.checks}
    for pv in result.pvs:
        if pv.check is not None:
            assert imported[pv.check].pv == pv.pv


@pytest.mark.parametrize("example", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_the_cli_writes_a_file_that_beamwatch_check_accepts(example, tmp_path, wide_output):
    out = tmp_path / "bw.yaml"
    runner = CliRunner()
    done = runner.invoke(app, ["import", "phoebus", str(example), "-o", str(out)])
    assert done.exit_code == 0, done.output
    checked = runner.invoke(app, ["check", "-c", str(out)])
    assert checked.exit_code == 0 and ": OK — beamline" in checked.output


def test_the_reader_test_model_maps_as_documented(tmp_path):
    result = import_file(DATA / "model_reader_test.xml")
    config = loads(tmp_path, result.yaml())
    a1pv1, a3pv1 = config.check("a1pv1"), config.check("a3pv1")
    assert (a1pv1.group, a1pv1.description, a1pv1.latch) == ("Area1", "a1pv1 description", True)
    assert a1pv1.for_ == 4 and (a1pv1.count.times, a1pv1.count.within) == (5, 4)
    assert a1pv1.epics_severity is None and a1pv1.above is None  # the record's own severity
    assert a1pv1.runbook.splitlines()[:2] == ["Guidance: a1pv1 Guidance Title 1",
                                             "  a1pv1 Guidance Detail 1"]
    assert "Display: a1pv1 Display Title 1" in a1pv1.runbook
    assert "From Area1: Command: Area1 Command Title 2" in a1pv1.runbook
    assert "From Area1: Automated action (after 5s in Phoebus): Area1 Action Title 1" \
        in a1pv1.runbook
    assert a3pv1.group == "Area2/Area3"
    notes = {(p.pv, n.item): n for p in result.pvs for n in p.notes}
    assert notes[("a1pv1", "annunciating")].what == "not mapped"
    assert notes[("a1pv1", "filter")].what == "not mapped"  # 'a1pv1 filter' reads "filter"
    assert notes[("a1pv1", "automated_action")].what == "not mapped"
    assert "2031-12-03T10:15:30" in notes[("a2pv1", "enabled")].why


def test_heart_of_gold_lists_the_include_it_cannot_follow_and_the_filter():
    result = import_file(DATA / "heart_of_gold.xml")
    [problem] = result.problems
    assert problem.startswith("heart_of_gold.xml:17: xi:include of ")
    nutrimatic = load_config_text(result).check("NUTRIMATIC")
    assert nutrimatic.for_ == 10 and nutrimatic.count.times == 30 and not nutrimatic.latch
    [drive] = [p for p in result.pvs if p.pv == "INFINITE:IMPROBABILITY:DRIVE"]
    assert drive.check == "INFINITE.IMPROBABILITY.DRIVE"
    assert [(n.item, n.what) for n in drive.notes] == [("filter", "not mapped")]
    assert "Eddie, Marvin" in drive.notes[0].why


def load_config_text(result):
    from beamwatch.config import parse_config

    return parse_config(result.yaml(), "<test>", env={})


def test_an_include_that_exists_is_followed_by_its_id(tmp_path):
    (tmp_path / "gpp.xml").write_text((DATA / "gpp.xml").read_text())
    main = tmp_path / "main.xml"
    main.write_text('<config name="HeartOfGold"><pv name="NUTRIMATIC"/>'
                    '<xi:include href="gpp.xml" xpointer="component" '
                    'xmlns:xi="http://www.w3.org/2001/XInclude"/></config>')
    result = import_file(main)
    assert result.problems == []
    config = load_config_text(result)
    assert [(c.id, c.group) for c in config.checks if c.pv] == [
        ("NUTRIMATIC", "HeartOfGold"), ("EDDIE", "GPP"), ("MARVIN", "GPP")]


def write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "alarms.xml"
    path.write_text(f'<?xml version="1.0"?>\n<config name="I04">\n{body}\n</config>\n')
    return path


def test_a_filter_over_pvs_of_the_file_becomes_when(tmp_path):
    path = write(tmp_path, """
  <component name="Vacuum"><component name="Front End">
    <pv name="FE04I-VA-GAUGE-01:P">
      <filter>'FE04I-PS-SHTR-01:STA' == 1 &amp;&amp; !BL04I:OFF</filter></pv>
    <pv name="FE04I-PS-SHTR-01:STA"/>
    <pv name="BL04I:OFF"><enabled>true</enabled></pv>
  </component></component>""")
    result = import_file(path)
    gauge = load_config_text(result).check("FE04I-VA-GAUGE-01.P")
    assert gauge.group == "Vacuum/Front End"
    assert gauge.when == ("severity >= MINOR and (checks['FE04I-PS-SHTR-01.STA'] == 1 and "
                          "not checks['BL04I.OFF']) > 0")
    assert gauge.latch  # no <latching>: Phoebus latches
    [note] = result.pvs[0].notes
    assert (note.item, note.what) == ("filter", "approximated")


def test_disabled_pvs_are_listed_not_imported_and_filters_on_them_are_not_mapped(tmp_path):
    path = write(tmp_path, """
  <pv name="A"><enabled>false</enabled></pv>
  <pv name="B"><filter>A > 1</filter></pv>
  <pv name="C"><filter>sin(B) > 1</filter></pv>""")
    result = import_file(path)
    a, b, c = result.pvs
    assert a.check is None and a.notes[0].what == "not imported"
    assert b.notes[0].what == "not mapped" and "reads A" in b.notes[0].why
    assert "function sin()" in c.notes[0].why
    assert [ch["id"] for ch in result.checks] == ["B", "C"]


def test_ids_are_valid_and_unique_and_renames_are_listed(tmp_path):
    path = write(tmp_path, """
  <pv name="BL04I:TEMP"/><pv name="BL04I.TEMP"/><pv name="7-up"/><pv name="beamwatch.x"/>
  <component name="X"><pv name="BL04I:TEMP"/></component>""")
    result = import_file(path)
    ids = [p.check for p in result.pvs]
    assert ids == ["BL04I.TEMP", "BL04I.TEMP-2", "pv-7-up", "pv-beamwatch.x"]
    assert result.pvs[1].notes[0].item == "id"
    assert "duplicate at I04/X is ignored, as Phoebus ignores it" in result.problems[0]
    load_config_text(result)


@pytest.mark.parametrize("delay,count,expect", [
    ("10", "3", {"for": "10s", "count": {"times": 3, "within": "10s"}}),
    ("10", "1", {}),  # count 1: alarm at the first departure, no for:
    ("", "5", {}),  # no delay: Phoebus ignores the count
    ("2.7", "", {"for": "2s"}),  # Phoebus keeps whole seconds
])
def test_delay_and_count(tmp_path, delay, count, expect):
    path = write(tmp_path, f'<pv name="P"><delay>{delay}</delay><count>{count}</count></pv>')
    [check] = import_file(path).checks
    assert {k: check[k] for k in ("for", "count") if k in check} == expect


def test_fragment_pastes_into_a_config(tmp_path):
    result = import_file(DATA / "model_reader_test.xml", fragment=True)
    assert "beamline:" not in result.yaml()
    text = "beamline: I04\n" + result.yaml()
    assert len([c for c in loads(tmp_path, text).checks if c.pv]) == 4


def test_json_report_and_bad_input(tmp_path):
    runner = CliRunner()
    done = runner.invoke(app, ["import", "phoebus", str(DATA / "heart_of_gold.xml"), "--json"])
    report = json.loads(done.output)
    assert (report["pvs"], report["checks"], report["not_mapped"]) == (2, 2, 2)
    assert report["per_pv"][1]["notes"][0]["item"] == "filter"
    assert report["yaml"].count("- id:") == 2
    bad = tmp_path / "bad.xml"
    bad.write_text("<config name='x'><pv name='a'></config>")
    done = runner.invoke(app, ["import", "phoebus", str(bad)])
    assert done.exit_code == 2
    assert "bad.xml:1:" in done.output and "not well-formed XML" in done.output
    other = tmp_path / "other.xml"
    other.write_text("<display/>")
    done = runner.invoke(app, ["import", "phoebus", str(other)])
    assert done.exit_code == 2 and "expected <config name=...>" in done.output


async def test_an_imported_filter_enables_the_alarm_only_while_it_holds(tmp_path):
    """Phoebus: the gauge's record alarm counts only while the shutter is open (1)."""
    from beamwatch.clock import FakeClock
    from beamwatch.engine.engine import Engine
    from beamwatch.model import Severity
    from beamwatch.sources.soft import SoftSource
    from beamwatch.store import Store

    path = write(tmp_path, """
  <pv name="FE:GAUGE"><latching>false</latching><filter>'FE:SHTR' == 1</filter></pv>
  <pv name="FE:SHTR"><latching>false</latching></pv>""")
    text = import_file(path).yaml() + f'storage: {{url: "sqlite:///{tmp_path}/bw.db"}}\n'
    config = loads(tmp_path, text)
    store, clock = Store(config.storage.url), FakeClock()
    source = SoftSource("ca", clock)
    engine = Engine(config, {"ca": source}, store, clock)
    await engine.start()
    source.push("FE:SHTR", 0)
    source.push("FE:GAUGE", 5e-7, severity=Severity.MINOR)
    assert engine.state_of("FE.GAUGE").severity == Severity.OK  # filter false: disabled
    source.push("FE:SHTR", 1)
    assert engine.state_of("FE.GAUGE").severity == Severity.MAJOR
    source.push("FE:GAUGE", 1e-8, severity=Severity.OK)
    assert engine.state_of("FE.GAUGE").severity == Severity.OK
    await engine.stop()
    store.close()


def test_dollar_brace_in_guidance_is_not_read_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.delenv("FIXDIR", raising=False)
    path = write(tmp_path, '<pv name="P"><guidance><title>Run ${FIXDIR}/fix.sh $(P)</title>'
                           '</guidance></pv>')
    result = import_file(path)
    runbook = loads(tmp_path, result.yaml()).check("P").runbook
    assert runbook == "Guidance: Run $FIXDIR/fix.sh $(P)\n"
    assert result.pvs[0].notes[0].item == "runbook"
