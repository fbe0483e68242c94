"""CPU per update: `beamwatch run` beside a bare libca client, in one run.

One softIoc (EPICS base, from epicscorelibs) serves N `calc` records at R Hz.
Three client processes watch every PV of it at the same time:

- bare:       pyepics' low-level `epics.ca` (its own libca), one subscription
              per PV with a callback that counts (the least a Python CA
              client can do per update);
- aioca:      aioca `camonitor` (beamwatch's CA client, same format and datatype as
              beamwatch asks for) with a callback that counts: the library's share;
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


def aioca_client(n: int, prefix: str) -> None:
    """The same with aioca (beamwatch's CA client) and a counting callback: what of
    beamwatch's cost per update is the client library's."""
    import asyncio
    import threading

    import aioca

    count = 0

    def on_update(_value) -> None:
        nonlocal count
        count += 1

    async def main() -> None:
        subs = [aioca.camonitor(f"{prefix}{i}", on_update, format=aioca.FORMAT_TIME,
                                datatype=aioca.DBR_ENUM_STR, notify_disconnect=True)
                for i in range(n)]
        while count < n:
            await asyncio.sleep(0.05)
        print(json.dumps({"ready": True, "subs": len(subs)}), flush=True)
        done = asyncio.Event()
        loop = asyncio.get_running_loop()

        def answer() -> None:  # stdin on a thread: the loop keeps draining CA meanwhile
            for _line in sys.stdin:
                loop.call_soon_threadsafe(lambda: print(json.dumps({"count": count}),
                                                        flush=True))
            loop.call_soon_threadsafe(done.set)

        threading.Thread(target=answer, daemon=True).start()
        await done.wait()

    asyncio.run(main())


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


def measure(n: int, rate: float, seconds: float, profile: str | None,
            compare: str | None = None, clients: tuple[str, ...] = ("bare", "aioca")) -> dict:
    """One IOC; the bare and aioca clients; beamwatch (and, with `compare`, a second
    beamwatch importing its code from that source tree: before/after in one run)."""
    prefix = "BENCH:V"
    with tempfile.TemporaryDirectory(prefix="beamwatch-cpu-") as tmp:
        workdir = Path(tmp)
        ioc = Ioc(n, rate, workdir)
        procs: dict[str, subprocess.Popen] = {}
        ports: dict[str, int] = {}
        try:
            time.sleep(2 + n / 5000)  # the IOC loads its records
            env = {**os.environ, "EPICS_CA_ADDR_LIST": ioc.addr,
                   "EPICS_CA_AUTO_ADDR_LIST": "NO", "PYTHONUNBUFFERED": "1"}
            t0 = time.perf_counter()
            for name, src in [("beamwatch", None)] + ([("compared", compare)] if compare else []):
                ports[name] = free_port()
                run_dir = workdir / name
                run_dir.mkdir()
                cfg = beamwatch_config(n, prefix, run_dir, ioc.addr, ports[name])
                cmd = [str(Path(sys.executable).parent / "beamwatch"), "run", "--config",
                       str(cfg)]
                procs[name] = subprocess.Popen(
                    cmd, env={**env, "PYTHONPATH": src} if src else env,
                    stdout=subprocess.DEVNULL, stderr=open(run_dir / "beamwatch.log", "w"))
            for name in clients:
                procs[name] = subprocess.Popen(
                    [sys.executable, __file__, "--client", name, "--n", str(n)],
                    env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            connect: dict[str, float] = {}
            for name in clients:
                ready, _, _ = select.select([procs[name].stdout], [], [], 600)
                if not ready:
                    raise TimeoutError(f"the {name} client did not connect within 600 s")
                json.loads(procs[name].stdout.readline())
                connect[name] = time.perf_counter() - t0
            while len(connect) < len(procs):
                for name, port in ports.items():
                    if name in connect:
                        continue
                    if procs[name].poll() is not None:
                        raise RuntimeError(f"{name} exited:\n" + (
                            workdir / name / "beamwatch.log").read_text()[-3000:])
                    if bw_samples(port) >= n:  # every PV has given its first value
                        connect[name] = time.perf_counter() - t0
                if time.perf_counter() - t0 > 900:
                    raise TimeoutError(f"beamwatch did not get every PV within 600 s: {connect}")
                time.sleep(0.1)
            time.sleep(3)  # start-up done on every side (gc.freeze, first flushes)
            spy = None
            if profile:  # sampled by py-spy over the window (its own CPU is not counted)
                spy = subprocess.Popen(
                    [str(Path(sys.executable).parent / "py-spy"), "record", "-o", profile,
                     "-f", "raw", "-r", "50", "--nonblocking", "-d", str(int(seconds)),
                     "--pid", str(procs["beamwatch"].pid)],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

            def read(name: str) -> tuple[float, float, float]:
                """(updates, CPU s, when): the count first, then the CPU at once, so a
                slow answer (a busy loop) does not skew updates against CPU."""
                p = procs[name]
                count = bw_samples(ports[name]) if name in ports else bare_count(p)
                return count, cpu_seconds(p.pid), time.perf_counter()

            start = {name: read(name) for name in procs}
            time.sleep(seconds)
            end = {name: read(name) for name in procs}
            lags = {}
            for name, port in ports.items():
                try:
                    lags[name] = metrics(port).get("event_loop_lag_seconds")
                except OSError:
                    lags[name] = None
            if spy is not None:
                spy.wait(timeout=60)
            rss = {name: rss_mb(p.pid) for name, p in procs.items()}
        finally:
            for name, p in procs.items():
                if p.poll() is None:
                    if name in clients:
                        p.stdin.close()
                    else:
                        p.terminate()
                    try:
                        p.wait(timeout=60)
                    except subprocess.TimeoutExpired:
                        p.kill()
            ioc.stop()

    def side(name: str) -> dict:
        (u0, c0, t0_), (u1, c1, t1_) = start[name], end[name]
        elapsed = t1_ - t0_
        updates, cpu = u1 - u0, c1 - c0
        return {"updates": updates, "seconds": elapsed, "updates_per_s": updates / elapsed,
                "fraction_of_offered": updates / (n * rate * elapsed), "cpu_s": cpu,
                "cpu_cores": cpu / elapsed, "cpu_us_per_update": 1e6 * cpu / max(1, updates),
                "rss_mb": rss[name], "connect_s": connect[name],
                **({"event_loop_lag_s": lags[name]} if name in lags else {})}

    sides = {name: side(name) for name in procs}
    bare_us = sides["bare"]["cpu_us_per_update"]
    out = {"n": n, "rate_hz": rate, "offered_per_s": n * rate, **sides}
    for name in sides:
        if name != "bare":
            out[f"{name}_cpu_per_update_vs_bare"] = sides[name]["cpu_us_per_update"] / bare_us
            out[f"{name}_kept_vs_bare"] = sides[name]["updates_per_s"] / max(
                1e-9, sides["bare"]["updates_per_s"])
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--n", type=int, action="append", help="PVs (repeatable; default 10000)")
    p.add_argument("--rate", type=float, default=2.0, help="updates per PV per second")
    p.add_argument("--seconds", type=float, default=30.0, help="measuring window")
    p.add_argument("--profile",
                   help="sample beamwatch with py-spy over the window (raw stacks to this file)")
    p.add_argument("--label", default="", help="a note stored with the result")
    p.add_argument("--compare", metavar="SRC",
                   help="also run a beamwatch importing from SRC (e.g. another checkout's "
                        "src/), in the same run: before and after side by side")
    p.add_argument("--without-aioca", action="store_true",
                   help="only the bare client beside beamwatch (large N on few cores)")
    p.add_argument("--client", choices=["bare", "aioca"], help=argparse.SUPPRESS)
    p.add_argument("--out", default=str(RESULTS / "cpu_per_update.json"))
    args = p.parse_args()
    if args.client:
        (bare_client if args.client == "bare" else aioca_client)(args.n[0], "BENCH:V")
        return
    out = Path(args.out)
    report = json.loads(out.read_text()) if out.exists() else {"bench": "cpu_per_update",
                                                              "runs": []}
    report["machine"] = {"cpus": os.cpu_count(), "python": platform.python_version(),
                         "platform": platform.platform()}
    report["goal"] = {"cpu_per_update_ratio": 1.25}
    for n in args.n or [10000]:
        r = measure(n, args.rate, args.seconds, args.profile, args.compare,
                    ("bare",) if args.without_aioca else ("bare", "aioca"))
        r["compared_src"] = args.compare
        r["when"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        r["label"] = args.label
        r["load_avg_1m"] = os.getloadavg()[0]
        report["runs"].append(r)
        print(f"N={n} at {args.rate:g} Hz (offered {n * args.rate:.0f}/s):", flush=True)
        for name in ("bare", "aioca", "beamwatch", "compared"):
            if name in r:
                x = r[name]
                times = x["cpu_us_per_update"] / r["bare"]["cpu_us_per_update"]
                print(f"  {name:10} {x['updates_per_s']:8.0f} upd/s {x['cpu_cores']:5.2f} cores "
                      f"{x['cpu_us_per_update']:6.1f} us/upd (x{times:.2f}) "
                      f"connect {x['connect_s']:6.1f} s RSS {x['rss_mb']:4.0f} MB "
                      f"lag {x.get('event_loop_lag_s')}", flush=True)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
