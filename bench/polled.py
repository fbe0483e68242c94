"""Polled-sources benchmark: many polled checks every second, and the engine's tick
staying on time.

HTTP half: N checks (`get: /api/status`, `json: state`, `every: 1s`) against the
simulated beamline's status service (`beamwatch.sim.status_http`, an asyncio
HTTP/1.1 keep-alive server) running as its own process. beamwatch's App runs in
this process with its real clock and loop, as `beamwatch run` does. Measured
over --seconds after a warm-up:

- tick lag: how late each 1 s engine tick starts (its start minus the previous
  tick's start minus 1 s), p50/p99/max;
- loop lag: a 100 ms probe's overshoot, p99/max (what every other task waits);
- polls/s: samples delivered by the HTTP source (and how many failed);
- CPU: this process's CPU time over wall time.

Cases, in one run so that they compare:

- `baseline`: the same App with one HTTP check: what a tick costs anyway;
- `http`: --checks HTTP checks;
- `http-hung`: the same, plus --hung checks of a server that accepts connections
  and never answers (timeout 5 s): the live checks must keep their rate;
- `http+sql`: --checks HTTP checks and --sql SQL checks (`query:` on MariaDB,
  every 2 s) in one App, as the issue asks: 500 HTTP + 200 SQL.

    .venv/bin/python bench/polled.py                  # 500 checks, every case
    .venv/bin/python bench/polled.py --checks 100 --sql 50 --seconds 10

MariaDB: 127.0.0.1:3306 root, no password (BEAMWATCH_BENCH_MARIADB to change);
a database bw_bench_* is created and dropped.

Results: bench/results/polled.json (cases are merged by name, so the SQL half of
the bench can add its own).
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
sys.path.insert(0, str(HERE))
from polled_sql import QUERY, SERVER, drop_database, make_database  # noqa: E402

RESULTS = HERE / "results"
OUT = RESULTS / "polled.json"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# --- the HTTP half ------------------------------------------------------------------------


def start_status_server(port: int) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "beamwatch.sim.status_http", "--port",
                             str(port)], stdout=subprocess.PIPE, text=True)
    assert "serving" in (proc.stdout.readline() if proc.stdout else ""), "no status server"
    return proc


def http_config(tmp: Path, port: int, checks: int, hung_port: int | None, hung: int,
                max_connections: int, sql_db: str | None = None, sql: int = 0) -> Path:
    ispyb = (f"\n  ispyb: {{kind: sql, url: \"{SERVER}/{sql_db}\", timeout: 5s, "
             "max_connections: 8}" if sql_db else "")
    lines = [f"""beamline: BENCH
storage: {{url: "sqlite:///{tmp / 'bw.db'}"}}
monitor: {{checks: false}}
web: {{listen: "off"}}
sources:
  gda: {{kind: http, base_url: "http://127.0.0.1:{port}", timeout: 5s,
         max_connections: {max_connections}}}{ispyb}
checks:"""]
    for i in range(sql if sql_db else 0):
        lines.append(f"  - {{id: q-{i}, source: ispyb, query: \"{QUERY.format(f'i{i % 24:02d}')}"
                     f"\", every: 2s, above: {{minor: 1000}}}}")
    for i in range(checks):
        lines.append(f"  - {{id: gda-{i}, source: gda, get: /api/status?i={i}, json: state, "
                     f"when: \"value != 'RUNNING'\", every: 1s}}")
    for i in range(hung if hung_port else 0):
        lines.append(f"  - {{id: hung-{i}, source: gda, get: \"http://127.0.0.1:{hung_port}/s\","
                     f" measure: status, every: 1s, timeout: 5s}}")
    path = tmp / "bw.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


async def measure_app(config: Path, warmup: float, seconds: float) -> dict:
    from beamwatch.app import App

    app = App(config)
    ticks: list[float] = []
    probes: list[float] = []
    polls = {"ok": 0, "failed": 0, "hung": 0, "sql": 0}
    measuring = False

    real_tick = app._tick

    async def tick() -> None:
        if measuring:
            ticks.append(time.monotonic())
        await real_tick()

    def counting(real_emit):
        def emit(sample) -> None:
            if measuring:
                key = "hung" if sample.address.startswith("hung-") else (
                    "failed" if not sample.connected else
                    "sql" if sample.address.startswith("q-") else "ok")
                polls[key] += 1
            real_emit(sample)
        return emit

    app._tick = tick
    for name in ("gda", "ispyb"):
        if name in app.sources:
            app.sources[name]._emit = counting(app.sources[name]._emit)

    async def probe() -> None:
        while True:
            t = time.monotonic()
            await asyncio.sleep(0.1)
            if measuring:
                probes.append(time.monotonic() - t - 0.1)

    runner = asyncio.create_task(app.run())
    prober = asyncio.create_task(probe())
    await asyncio.sleep(warmup)
    measuring, cpu0, t0 = True, time.process_time(), time.monotonic()
    await asyncio.sleep(seconds)
    measuring = False
    cpu, wall = time.process_time() - cpu0, time.monotonic() - t0
    app.stop()
    prober.cancel()
    await runner
    lags = [max(0.0, b - a - 1.0) * 1000 for a, b in zip(ticks, ticks[1:], strict=False)]
    return {
        "seconds": round(wall, 1),
        "ticks": len(ticks),
        "tick_lag_p50_ms": round(pct(lags, 0.5), 1),
        "tick_lag_p99_ms": round(pct(lags, 0.99), 1),
        "tick_lag_max_ms": round(max(lags, default=float("nan")), 1),
        "loop_lag_p99_ms": round(pct(probes, 0.99) * 1000, 1),
        "loop_lag_max_ms": round(max(probes, default=float("nan")) * 1000, 1),
        "polls_per_s": round(polls["ok"] / wall, 1),
        "sql_polls_per_s": round(polls["sql"] / wall, 1),
        "failed_polls": polls["failed"],
        "hung_samples": polls["hung"],
        "cpu_percent": round(100 * cpu / wall, 1),
        "load_average_1min": round(os.getloadavg()[0], 2),
    }


def http_case(name: str, args: argparse.Namespace, hung: int, checks: int | None = None,
              sql: int = 0) -> dict:
    checks = args.checks if checks is None else checks
    sql_db = make_database() if sql else None
    port = free_port()
    server = start_status_server(port)
    blackhole = socket.socket()
    blackhole.bind(("127.0.0.1", 0))
    blackhole.listen(hung + 8)  # accepts (the kernel does) and never answers
    try:
        with tempfile.TemporaryDirectory() as tmp:
            config = http_config(Path(tmp), port, checks, blackhole.getsockname()[1], hung,
                                 args.max_connections, sql_db, sql)
            result = asyncio.run(measure_app(config, args.warmup, args.seconds))
    finally:
        server.terminate()
        server.wait()
        blackhole.close()
        if sql_db:
            drop_database(sql_db)
    return {"case": name, "source": "http+sql" if sql else "http", "checks": checks,
            "hung_checks": hung, "sql_checks": sql, "every_s": 1.0, "sql_every_s": 2.0,
            "max_connections": args.max_connections,
            "expected_polls_per_s": checks, "expected_sql_polls_per_s": sql / 2, **result}


# --- results ------------------------------------------------------------------------------


def save(cases: list[dict]) -> None:
    RESULTS.mkdir(exist_ok=True)
    old = json.loads(OUT.read_text()) if OUT.exists() else {}
    by_name = {c["case"]: c for c in old.get("cases", [])}
    by_name.update({c["case"]: c for c in cases})
    OUT.write_text(json.dumps({
        "bench": "polled",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "goal": {"tick_lag_p99_ms": 100, "polls_per_s": "= checks / every"},
        "cases": list(by_name.values()),
    }, indent=2) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checks", type=int, default=500)
    parser.add_argument("--hung", type=int, default=50)
    parser.add_argument("--sql", type=int, default=200, help="SQL checks of the mixed case")
    parser.add_argument("--max-connections", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--warmup", type=float, default=5.0)
    args = parser.parse_args()
    cases = []
    for name, hung, checks, sql in (("baseline", 0, 1, 0), ("http", 0, None, 0),
                                    ("http-hung", args.hung, None, 0),
                                    ("http+sql", 0, None, args.sql)):
        case = http_case(name, args, hung, checks, sql)
        cases.append(case)
        print(json.dumps(case), flush=True)
        for got, wanted in (("polls_per_s", "expected_polls_per_s"),
                            ("sql_polls_per_s", "expected_sql_polls_per_s")):
            if case[got] < 0.95 * case[wanted]:
                print(f"  {case['case']}: {got} below the configured rate", file=sys.stderr)
    save(cases)
    print(f"results in {OUT}")


if __name__ == "__main__":
    main()
