"""Two processes opening a new database at once both end up on the newest schema."""

import subprocess
import sys
import time

from beamwatch.store import Store
from beamwatch.store.migrate import HEAD, current

# each process imports everything first, then opens the store at the same moment
OPEN = """
import sys, time
from beamwatch.store import Store
from alembic import command  # noqa: F401 - imported before the start, not during
start = float(sys.argv[2])
time.sleep(max(0.0, start - time.time()))
Store(sys.argv[1]).close()
print('ok')
"""


def test_two_processes_creating_the_same_new_database_both_succeed(tmp_path):
    url = f"sqlite:///{tmp_path / 'bw.db'}"
    start = str(time.time() + 2.0)
    procs = [subprocess.Popen([sys.executable, "-c", OPEN, url, start], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(4)]
    results = [p.communicate(timeout=120) for p in procs]
    assert [out.strip() for out, _ in results] == ["ok"] * 4, [e for _, e in results]
    store = Store(url)
    assert current(store.engine) == HEAD
    store.close()
