"""Ingest benchmark: updates/s through the whole pipeline versus the raw CA client.

One softIoc (EPICS base, from epicscorelibs) serves N `calc` records updating at
R Hz. In the same run, against the same IOC, two client processes measure in
turn, each for --seconds after every PV delivered its first value:

- raw:      aioca `camonitor` on every PV with a counter callback (the baseline);
- pipeline: `beamwatch run`'s App — CaSource -> checks -> alarm logic, with the
            SQLite store, the 1 s tick and the 2 s value flush running.

Reported per N: updates/s of each, pipeline ÷ raw, time to connect and
subscribe every PV, and the client's RSS. Results: bench/results/ingest.json.

    .venv/bin/python bench/ingest.py                 # N = 1000 and 10000, R = 10 Hz
    .venv/bin/python bench/ingest.py --n 1000 --seconds 5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"


# --- the IOC ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def db_text(n: int, rate: float) -> str:
    # EPICS' periodic scans: the rate must be one of them
    scans = {10: ".1 second", 5: ".2 second", 2: ".5 second", 1: "1 second",
             0.5: "2 second", 0.2: "5 second", 0.1: "10 second"}
    if rate not in scans:
        raise SystemExit(f"--rate {rate:g}: one of {', '.join(f'{r:g}' for r in scans)}")
    scan = scans[rate]
    return "".join(
        f'record(calc, "BENCH:V{i}") {{ field(SCAN, "{scan}") field(CALC, "RNDM*100") }}\n'
        for i in range(n))


class Ioc:
    def __init__(self, n: int, rate: float, workdir: Path):
        self.port = free_port()
        db = workdir / "bench.db"
        db.write_text(db_text(n, rate))
        env = {**os.environ, "EPICS_CAS_SERVER_PORT": str(self.port),
               "EPICS_CAS_INTF_ADDR_LIST": "127.0.0.1", "EPICS_CAS_BEACON_ADDR_LIST": "127.0.0.1",
               "EPICS_CAS_AUTO_BEACON_ADDR_LIST": "NO"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "beamwatch.sim.ioc", "--name", "bench", "-d", str(db)],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            env=env)

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=20)


# --- the clients (each in its own process: one libca context each) ------------------------


def rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


async def raw_client(n: int, seconds: float) -> dict:
    import aioca

    count = 0
    seen: set[int] = set()
    first_all = asyncio.Event()

    def make(i: int):
        def on_value(_value) -> None:
            nonlocal count
            count += 1
            if i not in seen:
                seen.add(i)
                if len(seen) == n:
                    first_all.set()
        return on_value

    t0 = time.perf_counter()
    subs = [aioca.camonitor(f"BENCH:V{i}", make(i), format=aioca.FORMAT_TIME)
            for i in range(n)]
    await asyncio.wait_for(first_all.wait(), 120)
    connect = time.perf_counter() - t0
    start_count, start = count, time.perf_counter()
    await asyncio.sleep(seconds)
    rate = (count - start_count) / (time.perf_counter() - start)
    result = {"updates_per_s": rate, "connect_s": connect, "rss_mb": rss_mb()}
    for s in subs:
        s.close()
    return result


async def pipeline_client(n: int, seconds: float, workdir: Path, addr: str) -> dict:
    from beamwatch.app import App

    cfg = workdir / "bench.yaml"
    checks = "".join(f"  - {{id: v{i}, pv: 'BENCH:V{i}', above: {{major: 1000}}}}\n"
                     for i in range(n))
    cfg.write_text(f"beamline: BENCH\nstorage: {{url: 'sqlite:///{workdir / 'bench.db3'}'}}\n"
                   f"sources: {{ca: {{kind: ca, addr_list: ['{addr}']}}}}\nchecks:\n{checks}")
    app = App(cfg)
    engine = app.engine
    t0 = time.perf_counter()
    task = asyncio.create_task(app.run())
    while sum(1 for rt in engine.runtimes.values() if rt.input.sample is not None) < n:
        await asyncio.sleep(0.02)
        if time.perf_counter() - t0 > 120:
            raise TimeoutError("PVs did not all connect within 120 s")
    connect = time.perf_counter() - t0
    start_count, start = engine.stats.samples, time.perf_counter()
    await asyncio.sleep(seconds)
    rate = (engine.stats.samples - start_count) / (time.perf_counter() - start)
    result = {"updates_per_s": rate, "connect_s": connect, "rss_mb": rss_mb(),
              "batches": engine.stats.batches,
              "mean_batch": engine.stats.samples / max(1, engine.stats.batches)}
    app.stop()
    await task
    return result


def run_client(kind: str, n: int, seconds: float, addr: str, workdir: Path) -> dict:
    env = {**os.environ, "EPICS_CA_ADDR_LIST": addr, "EPICS_CA_AUTO_ADDR_LIST": "NO",
           "EPICS_CA_MAX_ARRAY_BYTES": "100000"}
    out = subprocess.run(
        [sys.executable, __file__, "--client", kind, "--n", str(n), "--seconds", str(seconds),
         "--addr", addr, "--workdir", str(workdir)],
        env=env, capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        raise RuntimeError(f"{kind} client failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# --- the run ---------------------------------------------------------------------------------


def measure(n: int, rate: float, seconds: float) -> dict:
    with tempfile.TemporaryDirectory(prefix="beamwatch-bench-") as tmp:
        workdir = Path(tmp)
        ioc = Ioc(n, rate, workdir)
        try:
            time.sleep(2 + n / 5000)  # the IOC loads its records
            print(f"N={n}: raw client…", file=sys.stderr, flush=True)
            raw = run_client("raw", n, seconds, ioc.addr, workdir)
            print(f"N={n}: pipeline…", file=sys.stderr, flush=True)
            pipe = run_client("pipeline", n, seconds, ioc.addr, workdir)
        finally:
            ioc.stop()
    return {"n": n, "rate_hz": rate, "offered_per_s": n * rate, "seconds": seconds,
            "raw": raw, "pipeline": pipe,
            "ratio": pipe["updates_per_s"] / raw["updates_per_s"] if raw["updates_per_s"] else None}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--n", type=int, action="append", help="PVs (repeatable; default 1000, 10000)")
    p.add_argument("--rate", type=float, default=10.0, help="updates per PV per second")
    p.add_argument("--seconds", type=float, default=10.0, help="measuring window per client")
    p.add_argument("--client", choices=["raw", "pipeline"], help=argparse.SUPPRESS)
    p.add_argument("--addr", help=argparse.SUPPRESS)
    p.add_argument("--workdir", help=argparse.SUPPRESS)
    p.add_argument("--out", default=str(RESULTS / "ingest.json"))
    args = p.parse_args()
    if args.client:
        n = args.n[0]
        if args.client == "raw":
            result = asyncio.run(raw_client(n, args.seconds))
        else:
            result = asyncio.run(pipeline_client(n, args.seconds, Path(args.workdir), args.addr))
        print(json.dumps(result))
        return
    runs = [measure(n, args.rate, args.seconds) for n in (args.n or [1000, 10000])]
    report = {"bench": "ingest", "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                          "platform": platform.platform()},
              "goal": {"ratio_at_10k": 0.8, "rss_mb": 250, "connect_10k_s": 3.0},
              "runs": runs}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(f"{'N':>6} {'offered/s':>10} {'raw/s':>9} {'pipeline/s':>10} {'ratio':>6} "
          f"{'connect s':>9} {'RSS MB':>7}")
    for r in runs:
        print(f"{r['n']:>6} {r['offered_per_s']:>10.0f} {r['raw']['updates_per_s']:>9.0f} "
              f"{r['pipeline']['updates_per_s']:>10.0f} {r['ratio']:>6.2f} "
              f"{r['pipeline']['connect_s']:>9.2f} {r['pipeline']['rss_mb']:>7.0f}")


if __name__ == "__main__":
    main()
