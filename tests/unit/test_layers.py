"""The import graph points one way: no module imports from a layer above its own.

The layers are declared once, in pyproject.toml ([tool.importlinter]); this
test runs import-linter over the package so `make test` fails the day someone
adds an arrow the wrong way (e.g. the store importing the engine). It runs as
its own process: import-linter configures logging globally (disabling every
logger that exists), which would blind the log assertions of later tests.
"""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LINT = Path(sys.executable).parent / "lint-imports"


def test_imports_respect_the_layers():
    done = subprocess.run([str(LINT), "--no-cache", "--config", "pyproject.toml"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    report = done.stdout + done.stderr
    assert done.returncode == 0, report[report.find("Broken contracts"):] or report
