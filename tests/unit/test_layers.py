"""The import graph points one way: no module imports from a layer above its own.

The layers are declared once, in pyproject.toml ([tool.importlinter]); this
test runs import-linter over the installed package so `make test` fails the
day someone adds an arrow the wrong way (e.g. the store importing the engine).
"""

from pathlib import Path

from importlinter.cli import lint_imports

ROOT = Path(__file__).resolve().parents[2]


def test_imports_respect_the_layers(monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    code = lint_imports(config_filename=str(ROOT / "pyproject.toml"), no_cache=True)
    report = capsys.readouterr().out
    assert code == 0, report[report.find("Broken contracts"):]
