"""The store on a real PostgreSQL: migrations, the log, upserts, and outbox claims that
never hand one row to two workers (FOR UPDATE SKIP LOCKED)."""

import threading

from beamwatch.model import AlarmState, Severity, Transition
from beamwatch.store import LatestValue, Store
from beamwatch.store.outbox import Outbox


def transition(cid, t, new=Severity.MAJOR):
    return Transition(cid, t, Severity.OK, new, new, False, 1.5, "m", "evaluation")


def test_log_states_values_history_roundtrip(pg_url):
    store = Store(pg_url)
    state = AlarmState("dcm-temp", Severity.MAJOR, Severity.MAJOR, since=10.0, value=141.0)
    store.record([(transition("dcm-temp", 10.0), state)])
    store.record([(transition("dcm-temp", 20.0, Severity.MINOR),
                   AlarmState("dcm-temp", Severity.MINOR, Severity.MINOR, since=20.0))])
    assert store.load_states()["dcm-temp"].severity == Severity.MINOR
    assert [r.transition.new for r in store.transitions()] == [Severity.MAJOR, Severity.MINOR]
    store.save_latest([LatestValue("dcm-temp", 30.0, float("nan"), Severity.INVALID, True,
                                   "127.0.0.1:5064", "value is NaN")])
    store.save_latest([LatestValue("dcm-temp", 31.0, 100.0, Severity.OK, True, None, None)])
    assert store.latest()["dcm-temp"].value == 100.0
    store.save_history([{"check_id": "dcm-temp", "minute": 1, "vmin": 1.0, "vmax": 2.0,
                         "vlast": 2.0, "count": 3}])
    store.save_history([{"check_id": "dcm-temp", "minute": 1, "vmin": 0.5, "vmax": 2.0,
                         "vlast": 0.5, "count": 4}])
    [row] = store.history("dcm-temp", since=0)
    assert (row["vmin"], row["count"]) == (0.5, 4)
    assert store.purge(before=15.0)["transitions"] == 1
    store.close()


def test_two_workers_never_claim_the_same_notification(pg_url):
    store = Store(pg_url)
    rows = [{"dedup_key": f"k{i}", "kind": "alarm", "receiver": "person:ana",
             "destination": "email", "message": {"i": i}, "created_at": 1.0} for i in range(200)]
    assert Outbox(store).queue(rows) == 200
    assert Outbox(store).queue(rows[:10]) == 0  # same dedup keys: nothing new
    claimed: dict[str, list[int]] = {"a": [], "b": []}

    def work(name):
        box = Outbox(store, worker=name)
        while batch := box.claim(now=5.0, limit=7):
            claimed[name].extend(o.id for o in batch)

    threads = [threading.Thread(target=work, args=(n,)) for n in claimed]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    everything = claimed["a"] + claimed["b"]
    assert len(everything) == 200 and len(set(everything)) == 200
    store.close()
