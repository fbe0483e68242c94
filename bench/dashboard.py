"""Dashboard benchmark: the API's answers on a week-old store, and the board's first
render in Debian's chromium.

Store (SQLite, made here): --checks checks (10,000) with 7 days of transitions
(--per-day each, alternating MAJOR/OK) and per-minute values for --with-values of
them (7 days × 1440 minutes each). The app is `web.app.create_app` served by uvicorn
on loopback, as `beamwatch run` serves it (no engine: the API reads the store).

Measured, each --repeat times (p50 / p99 / max):
- `values-24h`: GET /api/checks/ID/values?since=24h (goal ≤ 50 ms);
- `history-24h`: GET /api/history?since=24h&check=ID;
- `timeline-24h`: GET /api/timeline?since=24h, every check (goal ≤ 500 ms);
- baselines in the same run: the bare SQL of each (SELECT of the rows the answer is
  built from), so the cost of the API above the database shows;
- `board-first-render`: chromium opens / with --board checks (5,000) and every tile
  is drawn (goal < 1 s), from navigation start, with Playwright.

    .venv/bin/python bench/dashboard.py            # 10k checks, 7 days: ~1 min to build
    .venv/bin/python bench/dashboard.py --checks 2000 --repeat 10

Results: bench/results/dashboard.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import random
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "results" / "dashboard.json"
DAY = 86400.0
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summary(seconds: list[float]) -> dict:
    ms = [s * 1000 for s in seconds]
    return {"p50_ms": round(pct(ms, .5), 1), "p99_ms": round(pct(ms, .99), 1),
            "max_ms": round(max(ms), 1), "n": len(ms)}


def write_config(path: Path, db: Path, checks: int) -> None:
    lines = [f'beamline: BENCH\nstorage: {{url: "sqlite:///{db}"}}\nmonitor: {{checks: false}}'
             '\nchecks:']
    lines += [f'  - {{id: c-{i}, group: g{i % 50}, pv: "BENCH:{i}", above: {{major: 90}}}}'
              for i in range(checks)]
    path.write_text("\n".join(lines) + "\n")


def fill(store, checks: int, per_day: int, with_values: int, now: float) -> dict:
    """A week of log: transitions for every check, minutes for some. Returns counts."""
    from sqlalchemy import insert

    from beamwatch.store import tables as t

    rng = random.Random(7)
    rows, states = [], []
    for i in range(checks):
        times = sorted(now - rng.uniform(0, 7 * DAY) for _ in range(per_day * 7))
        for k, at in enumerate(times):
            new, old = (2, 0) if k % 2 == 0 else (0, 2)
            rows.append({"time": at, "check_id": f"c-{i}", "old": old, "new": new,
                         "current": new, "acked": False, "value": 95.0 if new else 20.0,
                         "message": "95 above major limit 90" if new else "",
                         "reason": "evaluation"})
        last = rows[-1]
        states.append({"check_id": f"c-{i}", "severity": last["new"], "current": last["new"],
                       "acked": False, "since": last["time"], "message": last["message"],
                       "value": last["value"]})
    minutes = []
    first = int((now - 7 * DAY) // 60)
    for i in range(with_values):
        for m in range(first, int(now // 60)):
            v = 20 + 5 * rng.random()
            minutes.append({"check_id": f"c-{i}", "minute": m, "vmin": v - 1, "vmax": v + 1,
                            "vlast": v, "count": 120, "connected": True})
    with store.engine.begin() as conn:
        for chunk in range(0, len(rows), 50_000):
            conn.execute(insert(t.transitions), rows[chunk:chunk + 50_000])
        conn.execute(insert(t.alarm_states), states)
        for chunk in range(0, len(minutes), 50_000):
            conn.execute(insert(t.value_history), minutes[chunk:chunk + 50_000])
    return {"transitions": len(rows), "minutes": len(minutes)}


def baseline(store, now: float, repeat: int) -> dict:
    """The bare SQL under each answer."""
    from sqlalchemy import select

    from beamwatch.store import tables as t

    def timed(q) -> list[float]:
        out = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            with store.engine.connect() as conn:
                conn.execute(q).all()
            out.append(time.perf_counter() - t0)
        return out

    vh, tr = t.value_history.c, t.transitions.c
    return {
        "sql-values-24h": summary(timed(select(t.value_history).where(
            vh.check_id == "c-1", vh.minute >= int((now - DAY) // 60)))),
        "sql-history-24h": summary(timed(select(t.transitions).where(
            tr.check_id == "c-1", tr.time >= now - DAY))),
        "sql-timeline-24h": summary(timed(select(t.transitions).where(tr.time >= now - DAY))),
    }


async def serve(config_path: Path):
    from beamwatch.config import load_config
    from beamwatch.store import Store
    from beamwatch.web.api import Backend
    from beamwatch.web.app import create_app
    from beamwatch.web.heartbeat import Beat
    from beamwatch.web.server import WebServer, bind

    cfg = load_config(config_path)
    store = Store(cfg.storage.url)
    app = create_app(receive_beat=lambda *_: Beat.UNKNOWN, verdict=lambda: (True, "ok"),
                     backend=Backend(lambda: cfg, store, lambda _: []), web=lambda: cfg.web)
    server = WebServer(app, bind("127.0.0.1", 0))  # as beamwatch run binds it
    stop = asyncio.Event()
    task = asyncio.create_task(server.serve(stop))
    await asyncio.sleep(0.3)
    return server, stop, task, store


async def api_cases(url: str, repeat: int) -> dict:
    import httpx

    out = {}
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        for name, path in (("values-24h", "/api/checks/c-1/values?since=24h"),
                           ("history-24h", "/api/history?since=24h&check=c-1"),
                           ("timeline-24h", "/api/timeline?since=24h")):
            await client.get(path)  # warm
            times = []
            for _ in range(repeat):
                t0 = time.perf_counter()
                r = await client.get(path)
                times.append(time.perf_counter() - t0)
                assert r.status_code == 200, r.text[:200]
            out[name] = summary(times)
            print(name, out[name], flush=True)
    return out


async def board_render(url: str, checks: int, repeat: int) -> dict:
    from playwright.async_api import async_playwright

    times = []
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path="/usr/bin/chromium", args=FLAGS)
        for _ in range(repeat):
            page = await browser.new_page(viewport={"width": 1600, "height": 1000})
            await page.goto(url + "/", wait_until="commit")
            await page.wait_for_function(f"document.querySelectorAll('.tile').length >= "
                                         f"{checks}", timeout=60_000)
            times.append(await page.evaluate("performance.now()") / 1000)
            await page.close()
        await browser.close()
    result = summary(times)
    print("board-first-render", result, flush=True)
    return result


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checks", type=int, default=10_000)
    parser.add_argument("--board", type=int, default=5_000)
    parser.add_argument("--per-day", type=int, default=4)
    parser.add_argument("--with-values", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()
    sys.path.insert(0, str(HERE.parent / "src"))
    from beamwatch.store import Store

    results: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        now = time.time()
        db = Path(tmp) / "week.db"
        cfg = Path(tmp) / "week.yaml"
        write_config(cfg, db, args.checks)
        store = Store(f"sqlite:///{db}")
        t0 = time.perf_counter()
        sizes = fill(store, args.checks, args.per_day, args.with_values, now)
        print(f"store filled in {time.perf_counter() - t0:.0f}s: {sizes}", flush=True)
        results.update(baseline(store, now, args.repeat))
        store.close()
        server, stop, task, _ = await serve(cfg)
        results.update(await api_cases(server.url, args.repeat))
        stop.set()
        await task

        board_db = Path(tmp) / "board.db"
        board_cfg = Path(tmp) / "board.yaml"
        write_config(board_cfg, board_db, args.board)
        store = Store(f"sqlite:///{board_db}")
        fill(store, args.board, 1, 0, now)
        store.close()
        server, stop, task, _ = await serve(board_cfg)
        results["board-first-render"] = await board_render(server.url, args.board, 5)
        stop.set()
        await task
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps({
        "when": time.strftime("%Y-%m-%dT%H:%M:%S"), "machine": platform.platform(),
        "python": platform.python_version(), "checks": args.checks, "board": args.board,
        "store": sizes, "cases": results}, indent=2) + "\n")
    print(f"written {OUT}")


if __name__ == "__main__":
    asyncio.run(main())
