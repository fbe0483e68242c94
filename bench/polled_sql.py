"""SQL polling benchmark: 200 `query:` checks polled concurrently against MariaDB every 2 s.

The SqlSource runs on one asyncio loop, as in `beamwatch run`, with a 1 s "tick" task
standing in for the engine's tick and a 50 ms probe: their lateness is what polling
costs the engine. Reported per case: polls/s (successful and failed), tick lag
(p50/p99/max), loop lag, poll latency (p50/p99, from the poll's start to its sample).

Cases: `healthy` (200 checks of a small ISPyB-like queue table); `with-hangs` (the same,
plus 10 checks whose query hangs, SELECT SLEEP(30), cancelled by the server at their
1 s timeout) to show that hung queries cost only their own checks.

    .venv/bin/python bench/polled_sql.py                     # 2 x 30 s
    .venv/bin/python bench/polled_sql.py --seconds 10 --checks 50

MariaDB: 127.0.0.1:3306 root, no password (BEAMWATCH_BENCH_MARIADB to change);
a database bw_bench_* is created and dropped. Results: bench/results/polled_sql.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import time
import uuid
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ingest import RESULTS  # noqa: E402

from beamwatch.config.schema import Config  # noqa: E402
from beamwatch.model import Sample  # noqa: E402
from beamwatch.sources.sql import SqlSource  # noqa: E402

SERVER = os.environ.get("BEAMWATCH_BENCH_MARIADB", "mysql+pymysql://root@127.0.0.1:3306")
QUERY = "SELECT count(*) FROM queue WHERE status = 'queued' AND beamline = '{}'"


def make_database() -> str:
    name = f"bw_bench_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(SERVER, poolclass=sa.pool.NullPool)
    with admin.begin() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
        conn.exec_driver_sql(f"CREATE TABLE {name}.queue (id INT PRIMARY KEY, "
                             "beamline VARCHAR(8), status VARCHAR(16), KEY (beamline, status))")
        rows = ", ".join(f"({i}, 'i{i % 24:02d}', '{'queued' if i % 3 else 'done'}')"
                         for i in range(5000))
        conn.exec_driver_sql(f"INSERT INTO {name}.queue VALUES {rows}")
    admin.dispose()
    return name


def drop_database(name: str) -> None:
    admin = sa.create_engine(SERVER, poolclass=sa.pool.NullPool)
    with admin.begin() as conn:
        conn.exec_driver_sql(f"DROP DATABASE {name}")
    admin.dispose()


def config(db: str, checks: int, hangs: int, every: float, connections: int) -> Config:
    rows = [{"id": f"q{i}", "source": "ispyb", "query": QUERY.format(f"i{i % 24:02d}"),
             "every": every, "above": {"minor": 1000}} for i in range(checks)]
    rows += [{"id": f"hang{i}", "source": "ispyb", "query": "SELECT SLEEP(30)",
              "every": every, "timeout": 1.0} for i in range(hangs)]
    return Config.model_validate({
        "beamline": "BENCH",
        "sources": {"ispyb": {"kind": "sql", "url": f"{SERVER}/{db}", "timeout": 5.0,
                              "max_connections": connections}},
        "checks": rows})


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


async def run_case(cfg: Config, seconds: float) -> dict:
    source = SqlSource("ispyb", cfg)
    samples: list[tuple[float, Sample]] = []
    source.subscribe([c.id for c in cfg.checks])
    tick_lag: list[float] = []
    loop_lag: list[float] = []

    async def probe(period: float, into: list[float]) -> None:
        due = time.monotonic() + period
        while True:
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            into.append(max(0.0, time.monotonic() - due))
            due += period

    await source.start(lambda batch: samples.extend((time.time(), s) for s in batch))
    warmup = 3.0  # the first polls are spread over a second; connections are opened
    await asyncio.sleep(warmup)
    samples.clear()
    probes = [asyncio.ensure_future(probe(1.0, tick_lag)),
              asyncio.ensure_future(probe(0.05, loop_lag))]
    await asyncio.sleep(seconds)
    for p in probes:
        p.cancel()
    got = list(samples)
    await source.stop()

    ok = [s for _, s in got if s.connected]
    hung = [s for _, s in got if s.address.startswith("hang")]
    failed_healthy = [s for _, s in got if not s.connected and not s.address.startswith("hang")]
    latency = [(t - s.timestamp) * 1000 for t, s in got if s.connected]
    return {
        "checks": sum(1 for c in cfg.checks if c.id.startswith("q")),
        "hanging_checks": sum(1 for c in cfg.checks if c.id.startswith("hang")),
        "every_s": cfg.checks[0].poll_every,
        "max_connections": cfg.sources["ispyb"].max_connections,
        "seconds": seconds,
        "polls_per_s": round(len(ok) / seconds, 1),
        "expected_polls_per_s": round(sum(1 for c in cfg.checks if c.id.startswith("q"))
                                      / cfg.checks[0].poll_every, 1),
        "failed_polls_of_healthy_checks": len(failed_healthy),
        "hung_polls_reported": len(hung),
        "hung_reasons": sorted({s.error or "" for s in hung}),
        "tick_lag_ms": {"p50": round(pct(tick_lag, .5) * 1000, 2),
                        "p99": round(pct(tick_lag, .99) * 1000, 2),
                        "max": round(max(tick_lag, default=0) * 1000, 2)},
        "loop_lag_ms": {"p50": round(pct(loop_lag, .5) * 1000, 2),
                        "p99": round(pct(loop_lag, .99) * 1000, 2),
                        "max": round(max(loop_lag, default=0) * 1000, 2)},
        "poll_latency_ms": {"p50": round(pct(latency, .5), 2), "p99": round(pct(latency, .99), 2),
                            "max": round(max(latency, default=0), 2)},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checks", type=int, default=200)
    parser.add_argument("--every", type=float, default=2.0)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--connections", type=int, default=8)
    args = parser.parse_args()
    db = make_database()
    try:
        cases = []
        for name, hangs, connections in (("healthy", 0, args.connections),
                                         ("with-hangs", 10, args.connections + 10)):
            cfg = config(db, args.checks, hangs, args.every, connections)
            result = {"case": name, **asyncio.run(run_case(cfg, args.seconds))}
            print(json.dumps(result), flush=True)
            cases.append(result)
    finally:
        drop_database(db)
    out = {"bench": "polled_sql", "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                       "load_average_1min": round(os.getloadavg()[0], 2)},
           "database": "MariaDB " + server_version(),
           "cases": cases}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "polled_sql.json").write_text(json.dumps(out, indent=2) + "\n")
    print(f"-> {RESULTS / 'polled_sql.json'}")


def server_version() -> str:
    admin = sa.create_engine(SERVER, poolclass=sa.pool.NullPool)
    with admin.connect() as conn:
        version = conn.exec_driver_sql("SELECT version()").scalar()
    admin.dispose()
    return str(version)


if __name__ == "__main__":
    main()
