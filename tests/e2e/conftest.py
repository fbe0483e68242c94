"""Browser tests: Debian's chromium driven by Playwright (never `playwright install`).

In CI a missing chromium fails the test (.ci/run installs it); on a workstation the
test skips, saying how to install it. Screenshots go to test-artifacts/e2e/.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.integration.conftest import ca_env, sim  # noqa: F401 - the simulated beamline

CHROMIUM = "/usr/bin/chromium"
# as root and offline: no sandbox, and none of chromium's own network traffic
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "e2e"


def _need_chromium() -> None:
    if os.path.exists(CHROMIUM) and shutil.which("chromium"):
        return
    if os.environ.get("CI") == "true":
        pytest.fail("chromium is needed in CI: .ci/run installs it (apt-get install chromium)")
    pytest.skip("chromium not installed; apt-get install chromium to run the browser tests")


@pytest.fixture
async def browser():
    _need_chromium()
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield b
        await b.close()


@pytest.fixture
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS
