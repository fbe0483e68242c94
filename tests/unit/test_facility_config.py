"""facility.yaml is strict like the beamline config: every problem as FILE:LINE:COL."""

from __future__ import annotations

from typer.testing import CliRunner

from beamwatch import cli


def beamwatch(*args: str):
    return CliRunner().invoke(cli.app, list(args))


def test_facility_yaml_is_strict(tmp_path):
    fac = tmp_path / "facility.yaml"
    fac.write_text("facility: Diamond MX\nstorage: {url: 'sqlite:///x.db'}\nbeamline: [i03]\n")
    done = beamwatch("facility", "-c", str(fac))
    assert done.exit_code == 2
    assert done.stderr.splitlines() == [
        f"{fac}:2:11: storage.url: a facility shares one PostgreSQL: postgresql+psycopg://…",
        f"{fac}:3:1: beamline: unknown key",
    ]


def test_beamlines_are_named_as_in_their_configs_or_by_schema(tmp_path):
    from beamwatch.facility.config import load_facility

    fac = tmp_path / "facility.yaml"
    fac.write_text("facility: MX\nstorage: {url: 'postgresql+psycopg://db/bw'}\n"
                   "beamlines: [I04-1, i04_1, I24]\nmonitor_down_after: 1m\n")
    cfg = load_facility(fac)
    assert cfg.schemas == ["i04_1", "i24"]
    assert cfg.monitor_down_after == 60.0
