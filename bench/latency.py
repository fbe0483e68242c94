"""Latency benchmark: a PV crossing its threshold -> the webhook request arriving.

A softIoc serves the fault PV (and, for the loaded case, B background `calc`
records at 10 Hz that beamwatch also watches). `beamwatch run` runs as its own
process with a webhook channel pointing at an HTTP server in this process,
`group_wait: 0`. Each fault is a caput over the threshold; its latency is the
time until the alarm's webhook POST arrives (both clocks are this machine's).
Each fault uses its own PV (a PV faulted 200 times in a row would rightly be
muted as flapping), so every fault is a new incident. p50/p90/p99/max over
--faults faults, idle and loaded.

    .venv/bin/python bench/latency.py                     # 200 faults, idle and 20k updates/s
    .venv/bin/python bench/latency.py --faults 50 --background 0

Results: bench/results/latency.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ingest import RESULTS, free_port  # noqa: E402

BIN = Path(sys.executable).parent / "beamwatch"


class Receiver:
    """The webhook endpoint: notes when each notification kind arrives."""

    def __init__(self) -> None:
        self.arrivals: list[tuple[float, str]] = []
        self.cond = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                t = time.time()
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with receiver.cond:
                    receiver.arrivals.append((t, body["kind"]))
                    receiver.cond.notify_all()
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/hook"

    def wait(self, kind: str, after: float, timeout: float = 10.0) -> float:
        deadline = time.time() + timeout
        with self.cond:
            while True:
                for t, k in self.arrivals:
                    if k == kind and t >= after:
                        return t
                left = deadline - time.time()
                if left <= 0:
                    raise TimeoutError(f"no {kind} within {timeout}s")
                self.cond.wait(left)


def start_ioc(workdir: Path, faults: int, background: int) -> tuple[subprocess.Popen, str]:
    port = free_port()
    db = workdir / "lat.db"
    text = "".join(f'record(ai, "LAT:X{i}") {{ field(VAL, "0") }}\n' for i in range(faults))
    text += "".join(
        f'record(calc, "LAT:B{i}") {{ field(SCAN, ".1 second") field(CALC, "RNDM*100") }}\n'
        for i in range(background))
    db.write_text(text)
    env = {**os.environ, "EPICS_CAS_SERVER_PORT": str(port),
           "EPICS_CAS_INTF_ADDR_LIST": "127.0.0.1"}
    proc = subprocess.Popen([sys.executable, "-m", "beamwatch.sim.ioc", "-d", str(db)],
                            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=env)
    return proc, f"127.0.0.1:{port}"


def write_config(workdir: Path, addr: str, hook: str, faults: int, background: int) -> Path:
    # one PV per fault: a PV faulted 200 times in a row would be (rightly) muted as flapping
    checks = "".join(f"  - {{id: f{i}, group: fault, pv: 'LAT:X{i}', above: {{major: 50}}}}\n"
                     for i in range(faults)) + "".join(
        f"  - {{id: b{i}, pv: 'LAT:B{i}', above: {{major: 1000}}}}\n" for i in range(background))
    cfg = workdir / "lat.yaml"
    cfg.write_text(f"""beamline: BENCH
storage: {{url: "sqlite:///{workdir / 'lat.db3'}"}}
noise: {{recovery_grace: 0s}}  # each fault is its own incident: no waiting for bounces
sources: {{ca: {{kind: ca, addr_list: ["{addr}"]}}}}
checks:
{checks}channels:
  hook: {{kind: webhook, webhook_url: "{hook}"}}
routes:
  - match: {{group: fault}}
    to: [channel:hook]
    group_wait: 0s
""")
    return cfg


async def faults(count: int, receiver: Receiver) -> list[float]:
    import aioca

    # channels found first: a CA search (retried after ~1 s if a packet is lost) is not
    # part of what beamwatch is asked to do
    await aioca.connect([f"LAT:X{i}" for i in range(count)], timeout=30)
    latencies = []
    for i in range(count):
        t0 = time.time()
        await aioca.caput(f"LAT:X{i}", 100, wait=True)
        put_done = time.time()
        arrived = await asyncio.to_thread(receiver.wait, "alarm", t0)
        latencies.append(arrived - t0)
        if arrived - t0 > 0.5:
            print(f"slow fault {i}: caput took {(put_done - t0) * 1000:.0f} ms, then "
                  f"{(arrived - put_done) * 1000:.0f} ms to the webhook", file=sys.stderr)
        await aioca.caput(f"LAT:X{i}", 0, wait=True)
        await asyncio.sleep(0.05)
    return latencies


def run_case(count: int, background: int) -> dict:
    receiver = Receiver()
    with tempfile.TemporaryDirectory(prefix="beamwatch-lat-") as tmp:
        workdir = Path(tmp)
        ioc, addr = start_ioc(workdir, count, background)
        env = {**os.environ, "EPICS_CA_ADDR_LIST": addr, "EPICS_CA_AUTO_ADDR_LIST": "NO"}
        os.environ.update({"EPICS_CA_ADDR_LIST": addr, "EPICS_CA_AUTO_ADDR_LIST": "NO"})
        bw = subprocess.Popen([str(BIN), "run", "-c", str(write_config(
            workdir, addr, receiver.url, count, background))], env=env,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            time.sleep(4 + background / 2000)  # connect and subscribe everything
            latencies = asyncio.run(faults(count, receiver))
        finally:
            bw.terminate()
            bw.wait(timeout=30)
            ioc.terminate()
            ioc.wait(timeout=20)
    ms = sorted(x * 1000 for x in latencies)
    q = statistics.quantiles(ms, n=100)
    return {"faults": count, "background_pvs": background,
            "background_updates_per_s": background * 10,
            "p50_ms": q[49], "p90_ms": q[89], "p99_ms": q[98], "max_ms": ms[-1],
            "mean_ms": statistics.fmean(ms)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--faults", type=int, default=200)
    p.add_argument("--background", type=int, action="append",
                   help="background PVs at 10 Hz (repeatable; default 0 and 2000 = 20k/s)")
    p.add_argument("--out", default=str(RESULTS / "latency.json"))
    p.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.one:  # one case, in its own process: libca reads its address list only once
        print(json.dumps(run_case(args.faults, args.background[0])))
        return
    cases = []
    for background in args.background or [0, 2000]:
        print(f"{args.faults} faults, {background * 10} background updates/s…", file=sys.stderr,
              flush=True)
        out = subprocess.run([sys.executable, __file__, "--one", "--faults", str(args.faults),
                              "--background", str(background)],
                             stdout=subprocess.PIPE, text=True, timeout=3600)
        if out.returncode != 0:
            raise SystemExit(f"case with {background} background PVs failed")
        cases.append(json.loads(out.stdout.strip().splitlines()[-1]))
    report = {"bench": "latency", "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
              "goal": {"p99_idle_ms": 50, "p99_loaded_ms": 250}, "cases": cases}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(f"{'background/s':>12} {'p50 ms':>7} {'p90 ms':>7} {'p99 ms':>7} {'max ms':>7}")
    for c in cases:
        print(f"{c['background_updates_per_s']:>12} {c['p50_ms']:>7.1f} {c['p90_ms']:>7.1f} "
              f"{c['p99_ms']:>7.1f} {c['max_ms']:>7.1f}")


if __name__ == "__main__":
    main()
