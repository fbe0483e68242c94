"""One small file per config error, each with its exact expected message in its first line."""

from pathlib import Path

import pytest

from beamwatch.config import ConfigError, load_config

CASES = sorted((Path(__file__).parent.parent / "data" / "config_errors").glob("*.yaml"))


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_config_error_message(path, monkeypatch):
    monkeypatch.delenv("BEAMWATCH_TEST_UNSET_DB", raising=False)
    first = path.read_text().splitlines()[0] if path.read_text() else ""
    expected = first.removeprefix("# expect: ")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    got = [str(i).removeprefix(str(path.parent) + "/") for i in info.value.issues]
    assert got == [expected]


def test_all_errors_are_reported_at_once(tmp_path):
    cfg = tmp_path / "many.yaml"
    cfg.write_text(
        "beamline: I04\n"
        "checks:\n"
        "  - id: a\n    pv: A\n    colour: red\n"
        "  - id: b\n    pv: B\n    depends_on: [nope]\n"
        "  - id: a\n    pv: C\n"
    )
    with pytest.raises(ConfigError) as info:
        load_config(cfg)
    assert [i.path for i in info.value.issues] == [
        "checks[0].colour", "checks[1].depends_on[0]", "checks[2].id"]
