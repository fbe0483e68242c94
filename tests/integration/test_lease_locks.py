"""The lease's fence on a real PostgreSQL: a takeover waits for the old leader's fenced
write in progress, and the leader's own renewal does not (decision 0006)."""

from __future__ import annotations

import threading

from beamwatch.store import Store
from beamwatch.store.errors import LeaseLost
from beamwatch.store.lease import Holder, LeaseStore

A = Holder("ws1:11:x.a", "ws1", 11)
B = Holder("ws2:22:x.b", "ws2", 22)


def test_a_renewal_passes_a_fenced_write_in_progress_and_a_takeover_waits_for_it(pg_url):
    store = Store(pg_url)
    leases = LeaseStore(store)
    token = leases.acquire(A, 5.0, leases.read())
    fenced = store.engine.connect()
    writing = fenced.begin()
    leases.check(fenced, A, token)  # the leader's write, still open: the fence is held

    renewed = threading.Thread(target=leases.renew, args=(A, token, 0.0))  # expires now
    renewed.start()
    renewed.join(5)
    assert not renewed.is_alive(), "the renewal waited for the leader's own write"

    seen = leases.read()  # expired (ttl 0): a standby may take it
    taken: list[int | None] = []
    takeover = threading.Thread(target=lambda: taken.append(leases.acquire(B, 5.0, seen)))
    takeover.start()
    takeover.join(1.0)
    assert takeover.is_alive() and not taken, "the takeover did not wait for the write"
    writing.commit()  # the old leader's write gets in first ...
    takeover.join(5)
    assert taken == [token + 1]  # ... and the takeover after it
    fenced.close()

    with store.engine.begin() as conn:  # from now on the old leader cannot write
        try:
            leases.check(conn, A, token)
        except LeaseLost:
            pass
        else:
            raise AssertionError("the old leader's fence still held")
    store.close()
