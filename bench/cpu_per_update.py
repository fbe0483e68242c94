"""CPU per update: `beamwatch run` beside a bare libca client, in one run.

One softIoc (EPICS base, from epicscorelibs) serves N `calc` records at R Hz.
Two client processes watch every PV of it at the same time:

- bare:       pyepics' low-level `epics.ca` (its own libca), one subscription
              per PV with a callback that counts (the least a Python CA
              client can do per update);
- beamwatch:  `beamwatch run --config` with N threshold checks, SQLite store,
              HTTP API on loopback (for /metrics), as a user runs it.

Once both have every PV (beamwatch: N samples), both are measured over the same
--seconds window: CPU seconds of the whole process (all threads; utime+stime
from /proc/PID/stat), updates received (bare: its counter; beamwatch: the
`beamwatch_samples{source="ca"}` counter of /metrics, plus the updates aioca
merged, reported on stderr at exit), RSS. Every update is accounted for: the
IOC offered N x R x seconds; each client's count is compared with that.

    .venv/bin/python bench/cpu_per_update.py                    # N = 10000, R = 2 Hz
    .venv/bin/python bench/cpu_per_update.py --n 20000 --seconds 30

Results: bench/results/cpu_per_update.json (one entry per N, appended by N).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import select
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
sys.path.insert(0, str(HERE))
from ingest import Ioc, free_port  # noqa: E402 - bench/ is not a package

TICKS = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def cpu_seconds(pid: int) -> float:
    """utime + stime of every thread of the process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def rss_mb(pid: int) -> float:
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE / 2**20


# --- the bare client (run as a child: --client bare) -------------------------------------


def bare_client(n: int, prefix: str) -> None:
    """Subscribe every PV with pyepics' low-level API; on each line of stdin print the
    count so far; exit at EOF."""
    from epics import ca

    ca.initialize_libca()
    count = 0
    seen = bytearray(n)
    first = 0

    def on_update(pvname=None, value=None, **_kw):  # pyepics' callback signature
        nonlocal count, first
        count += 1

    chids = [ca.create_channel(f"{prefix}{i}", connect=False, auto_cb=False)
             for i in range(n)]
    for chid in chids:
        ca.connect_channel(chid, timeout=30)
    subs = [ca.create_subscription(chid, use_time=True, callback=on_update)
            for chid in chids]
    ca.flush_io()
    del seen, first
    print(json.dumps({"ready": True, "subs": len(subs)}), flush=True)
    for _line in sys.stdin:
        print(json.dumps({"count": count}), flush=True)


# --- the run --------------------------------------------------------------------------------


def beamwatch_config(n: int, prefix: str, workdir: Path, addr: str, port: int) -> Path:
    cfg = workdir / "beamwatch.yaml"
    checks = "".join(f"  - {{id: v{i}, pv: '{prefix}{i}', above: {{major: 1000}}}}\n"
                     for i in range(n))
    cfg.write_text(f"beamline: BENCH\nstorage: {{url: 'sqlite:///{workdir / 'store.db'}'}}\n"
                   f"web: {{listen: '127.0.0.1:{port}'}}\n"
                   f"sources: {{ca: {{kind: ca, addr_list: ['{addr}']}}}}\nchecks:\n{checks}")
    return cfg


def metrics_text(port: int) -> str:
    # a long timeout: a saturated beamwatch answers late (its loop is busy ingesting)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=60) as r:
        return r.read().decode()


def metrics(port: int) -> dict[str, float]:
    text = metrics_text(port)
    out: dict[str, float] = {}
    for line in text.splitlines():
        m = re.match(r'beamwatch_(samples_total)\{.*source="ca".*\} (\S+)', line) or \
            re.match(r"beamwatch_(event_loop_lag_seconds)\{.*\} (\S+)", line)
        if m:
            out[m.group(1)] = float(m.group(2))
    return out


def bw_samples(port: int) -> float:
    try:
        return metrics(port).get("samples_total", 0.0)
    except OSError:
        return 0.0


def bare_count(proc: subprocess.Popen) -> int:
    proc.stdin.write("\n")
    proc.stdin.flush()
    return json.loads(proc.stdout.readline())["count"]


def measure(n: int, rate: float, seconds: float, profile: str | None) -> dict:
    prefix = "BENCH:V"
    with tempfile.TemporaryDirectory(prefix="beamwatch-cpu-") as tmp:
        workdir = Path(tmp)
        ioc = Ioc(n, rate, workdir)
        bare = bw = None
        try:
            time.sleep(2 + n / 5000)  # the IOC loads its records
            env = {**os.environ, "EPICS_CA_ADDR_LIST": ioc.addr,
                   "EPICS_CA_AUTO_ADDR_LIST": "NO", "PYTHONUNBUFFERED": "1"}
            port = free_port()
            cfg = beamwatch_config(n, prefix, workdir, ioc.addr, port)
            cmd = [str(Path(sys.executable).parent / "beamwatch"), "run", "--config", str(cfg)]
            t0 = time.perf_counter()
            bw = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL,
                                  stderr=open(workdir / "beamwatch.log", "w"))
            bare = subprocess.Popen(
                [sys.executable, __file__, "--client", "bare", "--n", str(n)],
                env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            ready, _, _ = select.select([bare.stdout], [], [], 300)
            if not ready:
                raise TimeoutError("the bare client did not connect within 300 s")
            json.loads(bare.stdout.readline())
            bare_connect = time.perf_counter() - t0
            while bw_samples(port) < n:
                if bw.poll() is not None:
                    raise RuntimeError("beamwatch exited:\n"
                                       + (workdir / "beamwatch.log").read_text()[-3000:])
                if time.perf_counter() - t0 > 300:
                    raise TimeoutError(f"beamwatch did not get every PV within 300 s: {bw_samples(port)}; "
                                       + (workdir / "beamwatch.log").read_text()[-2000:])
                time.sleep(0.1)
            bw_connect = time.perf_counter() - t0
            time.sleep(3)  # start-up done on both sides (gc.freeze, first flushes)
            bw_pid = bw.pid
            spy = None
            if profile:  # sampled by py-spy over the window (its own CPU is not counted)
                spy = subprocess.Popen(
                    [str(Path(sys.executable).parent / "py-spy"), "record", "-o", profile,
                     "-f", "raw", "-r", "50", "--nonblocking", "-d", str(int(seconds)),
                     "--pid", str(bw_pid)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            c0 = (cpu_seconds(bare.pid), cpu_seconds(bw_pid))
            u0 = (bare_count(bare), bw_samples(port))
            t1 = time.perf_counter()
            time.sleep(seconds)
            u1 = (bare_count(bare), bw_samples(port))
            c1 = (cpu_seconds(bare.pid), cpu_seconds(bw_pid))
            elapsed = time.perf_counter() - t1
            lag = metrics(port).get("event_loop_lag_seconds")
            if spy is not None:
                spy.wait(timeout=60)
            rss = (rss_mb(bare.pid), rss_mb(bw_pid))
        finally:
            for p in (bare, bw):
                if p is not None and p.poll() is None:
                    if p is bare:
                        p.stdin.close()
                    else:
                        p.terminate()
                    try:
                        p.wait(timeout=60)
                    except subprocess.TimeoutExpired:
                        p.kill()
            ioc.stop()
    offered = n * rate * elapsed

    def side(i: int, connect: float) -> dict:
        updates = u1[i] - u0[i]
        cpu = c1[i] - c0[i]
        return {"updates": updates, "updates_per_s": updates / elapsed,
                "fraction_of_offered": updates / offered, "cpu_s": cpu,
                "cpu_cores": cpu / elapsed, "cpu_us_per_update": 1e6 * cpu / max(1, updates),
                "rss_mb": rss[i], "connect_s": connect}

    b, w = side(0, bare_connect), side(1, bw_connect)
    return {"n": n, "rate_hz": rate, "seconds": elapsed, "offered": offered,
            "bare": b, "beamwatch": w, "event_loop_lag_s": lag,
            "cpu_per_update_ratio": w["cpu_us_per_update"] / b["cpu_us_per_update"],
            "kept_vs_bare": w["updates"] / max(1, b["updates"])}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--n", type=int, action="append", help="PVs (repeatable; default 10000)")
    p.add_argument("--rate", type=float, default=2.0, help="updates per PV per second")
    p.add_argument("--seconds", type=float, default=30.0, help="measuring window")
    p.add_argument("--profile", help="sample beamwatch with py-spy over the window (raw stacks to this file)")
    p.add_argument("--label", default="", help="a note stored with the result")
    p.add_argument("--client", choices=["bare"], help=argparse.SUPPRESS)
    p.add_argument("--out", default=str(RESULTS / "cpu_per_update.json"))
    args = p.parse_args()
    if args.client == "bare":
        bare_client(args.n[0], "BENCH:V")
        return
    out = Path(args.out)
    report = json.loads(out.read_text()) if out.exists() else {"bench": "cpu_per_update",
                                                              "runs": []}
    report["machine"] = {"cpus": os.cpu_count(), "python": platform.python_version(),
                         "platform": platform.platform()}
    report["goal"] = {"cpu_per_update_ratio": 1.25}
    for n in args.n or [10000]:
        r = measure(n, args.rate, args.seconds, args.profile)
        r["when"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        r["label"] = args.label
        r["load_avg_1m"] = os.getloadavg()[0]
        report["runs"].append(r)
        b, w = r["bare"], r["beamwatch"]
        print(f"N={n} offered {r['offered']:.0f}: bare {b['updates']} upd "
              f"{b['cpu_cores']:.2f} cores {b['cpu_us_per_update']:.1f} us/upd "
              f"connect {b['connect_s']:.1f}s RSS {b['rss_mb']:.0f} | beamwatch "
              f"{w['updates']:.0f} upd {w['cpu_cores']:.2f} cores "
              f"{w['cpu_us_per_update']:.1f} us/upd connect {w['connect_s']:.1f}s "
              f"RSS {w['rss_mb']:.0f} | ratio {r['cpu_per_update_ratio']:.2f} "
              f"kept {r['kept_vs_bare']:.2f} lag {r['event_loop_lag_s']}", flush=True)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
