"""Soak: `beamwatch run` with N PVs at R Hz for an hour, watched from outside.

One softIoc serves N `calc` records at R Hz (the load) and one `ai` record per
injected fault. `beamwatch run` watches them all (N threshold checks that stay
OK, one check per fault PV routed to a local webhook with group_wait 0), with
its SQLite store and HTTP API, as a user runs it. Every --fault-every seconds
the soak puts a fault PV over its limit, times caput -> webhook, and clears it
(one PV per fault: a PV faulted again and again is rightly muted as flapping).

Every --every seconds it samples the beamwatch process: RSS, CPU (utime+stime
of all threads), threads, open file descriptors, TCP connections, the event
loop's lag and task count and the samples counter (from /metrics), and the
store's size on disk (database + WAL). The retention is --retention (short, so
the hourly purge has rows to delete; the purge runs an hour after start).

Results: bench/results/soak.json, a time series and a summary comparing the
first and last quarter of the run (flat = no trend beyond noise).

    .venv/bin/python bench/soak.py                           # 10k PVs, 2 Hz, 3600 s
    .venv/bin/python bench/soak.py --duration 180 --out /tmp/soak.json   # a short try

Not a test: CI skips it (it takes an hour); the figures go to README.md.
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
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
sys.path.insert(0, str(HERE))
from cpu_per_update import cpu_seconds, metrics_text, rss_mb  # noqa: E402
from ingest import free_port  # noqa: E402
from latency import Receiver  # noqa: E402


def start_ioc(workdir: Path, n: int, rate: float, faults: int) -> tuple[subprocess.Popen, str]:
    port = free_port()
    scan = {10: ".1 second", 5: ".2 second", 2: ".5 second", 1: "1 second"}[int(rate)]
    db = workdir / "soak.db"
    db.write_text("".join(
        f'record(calc, "SOAK:V{i}") {{ field(SCAN, "{scan}") field(CALC, "RNDM*100") }}\n'
        for i in range(n)) + "".join(
        f'record(ai, "SOAK:F{i}") {{ field(VAL, "0") }}\n' for i in range(faults)))
    env = {**os.environ, "EPICS_CAS_SERVER_PORT": str(port),
           "EPICS_CAS_INTF_ADDR_LIST": "127.0.0.1", "EPICS_CAS_BEACON_ADDR_LIST": "127.0.0.1",
           "EPICS_CAS_AUTO_BEACON_ADDR_LIST": "NO"}
    proc = subprocess.Popen([sys.executable, "-m", "beamwatch.sim.ioc", "--name", "soak",
                             "-d", str(db)], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=env)
    return proc, f"127.0.0.1:{port}"


def write_config(workdir: Path, addr: str, hook: str, n: int, faults: int, web_port: int,
                 retention: str) -> Path:
    checks = "".join(f"  - {{id: v{i}, pv: 'SOAK:V{i}', above: {{major: 1000}}}}\n"
                     for i in range(n)) + "".join(
        f"  - {{id: f{i}, group: fault, pv: 'SOAK:F{i}', above: {{major: 50}}}}\n"
        for i in range(faults))
    cfg = workdir / "soak.yaml"
    cfg.write_text(f"""beamline: SOAK
storage: {{url: "sqlite:///{workdir / 'store.db'}", retention: {retention}}}
web: {{listen: "127.0.0.1:{web_port}"}}
noise: {{recovery_grace: 0s}}
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


def gauges(port: int) -> dict[str, float]:
    out: dict[str, float] = {}
    try:
        text = metrics_text(port)
    except OSError:
        return out
    for line in text.splitlines():
        if line.startswith("#") or " " not in line:
            continue
        name, value = line.rsplit(" ", 1)
        if name.startswith("beamwatch_samples_total") and 'source="ca"' in name:
            out["samples"] = float(value)
        for key in ("event_loop_lag_seconds", "event_loop_tasks", "transitions_total",
                    "notifications_sent_total"):
            if name.startswith(f"beamwatch_{key}{{"):
                out[key] = float(value)
    return out


def process_figures(pid: int) -> dict[str, float]:
    import psutil

    proc = psutil.Process(pid)
    fds = os.listdir(f"/proc/{pid}/fd")
    return {"rss_mb": rss_mb(pid), "cpu_s": cpu_seconds(pid), "threads": proc.num_threads(),
            "fds": len(fds), "tcp": len(proc.net_connections(kind="tcp"))}


def store_mb(workdir: Path) -> float:
    return sum(p.stat().st_size for p in workdir.glob("store.db*")) / 2**20


async def inject(i: int, receiver: Receiver) -> float | None:
    """Fault PV i over its limit; seconds until the webhook arrived (None: not within
    60 s); then clear it."""
    import aioca

    pv = f"SOAK:F{i}"
    await aioca.connect(pv, timeout=30)  # the channel first: a search is not beamwatch's
    t0 = time.time()
    await aioca.caput(pv, 100, wait=True)
    try:
        arrived = await asyncio.to_thread(receiver.wait, "alarm", t0, 60.0)
        latency = arrived - t0
    except TimeoutError:
        latency = None
    await aioca.caput(pv, 0, wait=True)
    return latency


async def soak(args: argparse.Namespace, workdir: Path) -> dict:
    faults = int(args.duration // args.fault_every) + 2
    receiver = Receiver()
    ioc, addr = start_ioc(workdir, args.n, args.rate, faults)
    web_port = free_port()
    cfg = write_config(workdir, addr, receiver.url, args.n, faults, web_port, args.retention)
    env = {**os.environ, "EPICS_CA_ADDR_LIST": addr, "EPICS_CA_AUTO_ADDR_LIST": "NO"}
    os.environ.update({"EPICS_CA_ADDR_LIST": addr, "EPICS_CA_AUTO_ADDR_LIST": "NO"})
    await asyncio.sleep(2 + args.n / 5000)  # the IOC loads its records
    log = open(workdir / "beamwatch.log", "w")
    t_start = time.time()
    bw = subprocess.Popen([str(Path(sys.executable).parent / "beamwatch"), "run", "--config",
                           str(cfg)], env=env, stdout=log, stderr=log)
    series: list[dict] = []
    latencies: list[dict] = []
    try:
        while gauges(web_port).get("samples", 0) < args.n:  # every PV has its first value
            if bw.poll() is not None or time.time() - t_start > 600:
                raise RuntimeError("beamwatch did not start:\n"
                                   + (workdir / "beamwatch.log").read_text()[-3000:])
            await asyncio.sleep(0.5)
        connect_s = time.time() - t_start
        print(f"soak: {args.n} PVs connected after {connect_s:.1f} s", file=sys.stderr,
              flush=True)
        await asyncio.sleep(args.warmup)
        t0 = time.time()
        next_sample, next_fault, fault_i = t0, t0 + 10, 0
        prev: dict | None = None
        while True:
            now = time.time()
            if now >= next_fault and now - t0 < args.duration:
                latency = await inject(fault_i, receiver)
                latencies.append({"t": round(time.time() - t0, 1), "fault": fault_i,
                                  "latency_s": latency})
                print(f"soak: fault {fault_i} at {now - t0:.0f} s: "
                      f"{'missed' if latency is None else f'{latency * 1000:.0f} ms'}",
                      file=sys.stderr, flush=True)
                fault_i += 1
                next_fault += args.fault_every
            if now >= next_sample:
                figures = process_figures(bw.pid)
                point = {"t": round(now - t0, 1), **figures, **gauges(web_port),
                         "store_mb": store_mb(workdir)}
                if prev is not None:
                    dt = point["t"] - prev["t"]
                    point["cpu_cores"] = (point["cpu_s"] - prev["cpu_s"]) / dt
                    if "samples" in point and "samples" in prev:
                        point["updates_per_s"] = (point["samples"] - prev["samples"]) / dt
                series.append(point)
                prev = point
                next_sample += args.every
                if now - t0 >= args.duration:
                    break
            await asyncio.sleep(0.2)
    finally:
        if bw.poll() is None:
            bw.terminate()
            try:
                bw.wait(timeout=60)
            except subprocess.TimeoutExpired:
                bw.kill()
        ioc.terminate()
        ioc.wait(timeout=30)
    return {"connect_s": connect_s, "series": series, "faults": latencies,
            "exit_code": bw.returncode,
            "log_tail": (workdir / "beamwatch.log").read_text()[-2000:]}


def summary(series: list[dict], faults: list[dict], duration: float) -> dict:
    """First vs last quarter of the run, for each figure; min/max for the counts."""
    q = duration / 4

    def quarter(key: str, first: bool, points: list[dict] = series) -> float | None:
        vals = [p[key] for p in points if key in p and (p["t"] <= q if first else
                                                          p["t"] >= duration - q)]
        return round(statistics.median(vals), 4) if vals else None

    def slope_per_h(key: str) -> float | None:
        pts = [(p["t"], p[key]) for p in series if key in p]
        if len(pts) < 3:
            return None
        return round(statistics.linear_regression([t for t, _ in pts],
                                                  [v for _, v in pts]).slope * 3600, 3)

    out: dict = {}
    for key in ("rss_mb", "cpu_cores", "updates_per_s", "event_loop_lag_seconds",
                "event_loop_tasks", "threads", "fds", "tcp", "store_mb"):
        vals = [p[key] for p in series if key in p]
        if not vals:
            continue
        out[key] = {"first_quarter_median": quarter(key, True),
                    "last_quarter_median": quarter(key, False),
                    "min": min(vals), "max": max(vals), "end": vals[-1],
                    "slope_per_hour": slope_per_h(key)}
    lat = [f["latency_s"] for f in faults]
    if lat:
        finite = [x for x in lat if x is not None]
        half = len(lat) // 2

        def med(xs: list) -> float | None:
            xs = [x for x in xs if x is not None]
            return statistics.median(xs) if xs else None

        out["notification_latency_s"] = {
            "faults": len(lat), "missed": len(lat) - len(finite), "p50": med(finite),
            "max": max(finite) if finite else None,
            "first_half_median": med(lat[:half]), "second_half_median": med(lat[half:])}
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--n", type=int, default=10000, help="PVs of load")
    p.add_argument("--rate", type=float, default=2.0, help="updates per PV per second")
    p.add_argument("--duration", type=float, default=3600.0, help="seconds measured")
    p.add_argument("--every", type=float, default=30.0, help="seconds between samples")
    p.add_argument("--fault-every", type=float, default=180.0,
                   help="seconds between injected faults")
    p.add_argument("--warmup", type=float, default=30.0, help="seconds after connecting")
    p.add_argument("--retention", default="10m", help="storage.retention of the soak")
    p.add_argument("--out", default=str(RESULTS / "soak.json"))
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="beamwatch-soak-") as tmp:
        started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        run = asyncio.run(soak(args, Path(tmp)))
    report = {"bench": "soak", "started": started,
              "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                          "platform": platform.platform(), "load_avg_1m_at_end":
                          os.getloadavg()[0]},
              "args": vars(args), "connect_s": run["connect_s"],
              "summary": summary(run["series"], run["faults"], args.duration),
              "exit_code": run["exit_code"], "faults": run["faults"],
              "series": run["series"], "log_tail": run["log_tail"]}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report["summary"], indent=2))


if __name__ == "__main__":
    main()
