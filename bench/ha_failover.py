"""HA failover benchmark: the leader of a pair killed (or frozen) right before a fault.

Two `beamwatch run` processes (tests/support/ha_pair.py) on one private PostgreSQL
cluster (initdb + pg_ctl on a free port), one softIoc, one webhook receiver. Each
round: SIGKILL the current leader, at once raise a fault on a fresh check, and time
fault -> the page arriving (sent by the survivor); then wait for duplicates, clear
the fault, and start the killed member again (it stands by). Rounds alternate the
members. `--freeze N` rounds SIGSTOP the leader for 30 s instead and SIGCONT it
after: it must send nothing. Reported: time to page p50/max, duplicates (any
notification received twice) and losses (a fault never paged).

    .venv/bin/python bench/ha_failover.py                 # 20 kills, 2 freezes
    .venv/bin/python bench/ha_failover.py --kills 5 --freezes 0

The members play two hosts (BEAMWATCH_HOST), so a killed leader is replaced when its
lease runs out, as in a real pair (on one host a dead pid is seen at once).
Results: bench/results/ha_failover.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.ha_pair import DB, Pair, write_config  # noqa: E402
from tests.support.ioc import Ioc  # noqa: E402
from tests.support.pgcluster import PgCluster, pg_bin  # noqa: E402
from tests.support.waiting import wait_for  # noqa: E402

RESULTS = ROOT / "bench" / "results"
CHECKS = 6  # the pair's config has temp-1 .. temp-6; each round uses one, round-robin


class Receiver:
    """The webhook: (arrival time, message) of everything received."""

    def __init__(self):
        self.got: list[tuple[float, dict]] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with receiver.lock:
                    receiver.got.append((time.monotonic(), body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"

    def alarms(self, check: str, after: float) -> list[float]:
        with self.lock:
            return [t for t, m in self.got if m["kind"] == "alarm" and check in m["check_ids"]
                    and t >= after]

    def duplicates(self) -> int:
        with self.lock:
            ids = [m["id"] for _, m in self.got]
        return len(ids) - len(set(ids))


def one_round(pair: Pair, receiver: Receiver, n: int, freeze: bool, settle: float = 3,
              restart: float = 60) -> dict:
    wait_for(lambda: pair.holder() is not None, 60, "a leader")  # after a hand-over
    leader = pair.member(pair.holder())
    check = n % CHECKS + 1
    if freeze:
        leader.freeze()
    else:
        leader.kill()
    t0 = time.monotonic()
    pair.set(check, 20)
    try:
        wait_for(lambda: receiver.alarms(f"temp-{check}", t0), 60, "the page")
        paged = receiver.alarms(f"temp-{check}", t0)[0] - t0
    except AssertionError:
        paged = None
    if freeze:
        time.sleep(max(0.0, 30 - (time.monotonic() - t0)))
        leader.thaw()
        wait_for(lambda: pair.roles_in_store().get(leader.name) == "standby", 60, "standing by")
    time.sleep(3)  # a duplicate would have come by now
    pages = len(receiver.alarms(f"temp-{check}", t0))
    pair.set(check, 1)
    result = {"round": n, "how": "freeze" if freeze else "kill", "killed": leader.name,
              "check": f"temp-{check}", "seconds_to_page": paged, "pages": pages}
    if not freeze:
        leader.start()
        t1 = time.monotonic()
        try:
            wait_for(lambda: pair.roles_in_store().get(leader.name) == "standby", restart,
                     "standing by")
            result["seconds_to_stand_by_again"] = round(time.monotonic() - t1, 1)
        except AssertionError:  # recorded; the next round kills whoever leads then
            result["seconds_to_stand_by_again"] = None
    time.sleep(settle)  # the resolve goes out (and a warm standby connects) before the next
    # the survivor should lead still: a loaded leader that missed its renewals hands
    # over by itself (no page is lost, but the pair is not at ease)
    return {**result, "leads_after": pair.holder()}


def summary(rounds: list[dict], receiver: Receiver) -> dict:
    times = [r["seconds_to_page"] for r in rounds if r["seconds_to_page"] is not None]
    return {"rounds": len(rounds), "p50_s": round(statistics.median(times), 2) if times else None,
            "max_s": round(max(times), 2) if times else None,
            "within_15_s": sum(t <= 15 for t in times),
            "lost": sum(r["seconds_to_page"] is None for r in rounds),
            "paged_twice": sum(r["pages"] > 1 for r in rounds),
            "duplicate_messages": receiver.duplicates()}


def lease_troubles(pair: Pair, rounds: int) -> dict:
    """What the members logged about their lease over the whole run, beyond what the
    rounds' kills and freezes cause (one expired lease taken over each)."""
    logs = pair.a.log() + pair.b.log()
    return {"renewal_failed": logs.count("cannot renew the lease"),
            "lost_to_the_other": logs.count("lost the lease to another"),
            "renewed_late": logs.count("lease renewed late"),
            "expired_beyond_the_rounds": logs.count("lease has expired; taking over") - rounds}


def takeovers(pair: Pair) -> list[dict]:
    """Each new leader's start, step by step (seconds), from its `running` log line."""
    out = []
    for line in (pair.a.log() + pair.b.log()).splitlines():
        if " msg=running " in line and " level=warning " in line:
            out.append({k[:-2]: float(v) for k, v in re.findall(r"(\w+_s)=([\d.]+)", line)})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--freezes", type=int, default=2)
    ap.add_argument("--background", type=int, default=0, metavar="N",
                    help="N more PVs (calc, 0.2 Hz) with a threshold check each: what a "
                         "takeover of a big beamline must bring up")
    ap.add_argument("--cold", action="store_true",
                    help="warm_standby: false (the standby connects when it takes over)")
    ap.add_argument("--settle", type=float, default=3.0, metavar="S",
                    help="seconds after the killed member stands by again before the next "
                         "round (a warm standby of 100k PVs needs about a minute to connect)")
    ap.add_argument("--out", default=str(RESULTS / "ha_failover.json"))
    args = ap.parse_args()
    bindir = pg_bin()
    if bindir is None:
        sys.exit("initdb/pg_ctl not found: apt-get install postgresql")
    os.environ.setdefault("EPICS_CA_AUTO_ADDR_LIST", "NO")
    work = Path(tempfile.mkdtemp(prefix="bw-ha-bench-"))
    cluster = PgCluster(bindir)
    receiver = Receiver()
    background = "".join(f'record(calc, "$(P)B{i}") {{ field(SCAN, "5 second") '
                         f'field(CALC, "RNDM*100") }}\n' for i in range(args.background))
    ioc = Ioc(DB + background, timeout=60)
    extra = "".join(f"\n  - {{id: b{i}, pv: '{ioc.pv(f'B{i}')}', above: {{major: 1000}}}}"
                    for i in range(args.background))
    cfg = write_config(work / "ha.yaml", ioc, receiver.url, cluster.url, extra_checks=extra,
                       ca_extra=", warm_standby: false" if args.cold else "")
    pair = Pair(cfg, ioc, cluster.url, work)
    rounds: list[dict] = []
    try:
        pair.start(timeout=60 + args.background / 1000)
        time.sleep(args.settle)  # the standby connects (warm) before the first kill
        plan = [False] * args.kills + [True] * args.freezes
        for n, freeze in enumerate(plan):
            # a killed member of 100k checks needs minutes to start here (config, checks)
            rounds.append(one_round(pair, receiver, n, freeze, args.settle,
                                    restart=max(60.0, args.background / 500) + args.settle))
            r = rounds[-1]
            print(f"round {n + 1}/{len(plan)} {r['how']} {r['killed']}: paged in "
                  f"{r['seconds_to_page']} s, {r['pages']} page(s)", flush=True)
    finally:
        logs = pair.close()
        if not rounds or rounds[-1]["pages"] != 1:
            print(logs[-3000:], end="")
        ioc.close()
        cluster.close()
    kills = [r for r in rounds if r["how"] == "kill"]
    freezes = [r for r in rounds if r["how"] == "freeze"]
    result = {"bench": "ha_failover", "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                          "load_average_1min": os.getloadavg()[0]},
              "hosts": "two host names (the lease must run out)",
              "lease": {"ttl_s": 5.0, "renew_s": 1.0, "confirm_s": 2.0},
              "background_pvs": args.background,
              "standby": "cold" if args.cold else "warm",
              "goal": "exactly one page within 15 s of the fault",
              "kills": summary(kills, receiver) if kills else None,
              "freezes_30s": summary(freezes, receiver) if freezes else None,
              "unplanned_handovers": sum(r["leads_after"] == r["killed"] for r in rounds),
              "lease_troubles": lease_troubles(pair, len(rounds)),
              "takeover_start_s": takeovers(pair),
              "rounds": rounds}
    out = Path(args.out)
    runs = json.loads(out.read_text()) if out.exists() else []
    runs = runs if isinstance(runs, list) else [runs]  # one result per run, newest last
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(runs + [result], indent=1) + "\n")
    print(json.dumps({k: result[k] for k in ("standby", "background_pvs", "kills", "freezes_30s",
                                              "unplanned_handovers", "lease_troubles",
                                              "takeover_start_s")},
                     indent=1))


if __name__ == "__main__":
    main()
