import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))  # tests/support importable as `support`

import pytest  # noqa: E402

# aiosmtpd (the tests' SMTP server) logs each dropped connection at INFO from its own
# thread, sometimes after pytest has closed the captured stream: a "Logging error"
# traceback in the output that is no failure. Its warnings and errors still show.
logging.getLogger("mail.log").setLevel(logging.WARNING)
# The same for werkzeug (pytest-httpserver's server): it logs each request at INFO from
# its thread through a stderr handler of its own, made while a test's stream was
# captured; a slow request that ends after its test wrote to that closed stream.
logging.getLogger("werkzeug").setLevel(logging.WARNING)


@pytest.fixture
def wide_output():
    """The CLI's rich consoles 200 columns wide, one table row a line. Setting COLUMNS is
    not enough: a console created while COLUMNS was set keeps that width for the session,
    so the result depended on which test imported the CLI first."""
    from beamwatch.cli import common

    saved = [(c, c._width) for c in (common.out, common.err)]
    for console, _ in saved:
        console.width = 200
    yield
    for console, width in saved:
        console._width = width
