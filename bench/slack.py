"""Slack bot benchmark: how fast the bot answers Slack, and what a burst of Slack
requests costs the engine.

A real App (500 checks fed by an in-memory source at 2 Hz each, SQLite store) runs
`beamwatch run`'s services in this process — the web app on loopback with the bot in
HTTP mode — against a local Slack (tests/support/fake_slack.py). Signed slash
commands are POSTed to /slack/events by --clients concurrent clients.

Measured, per case:
- ack: the HTTP answer to Slack's request (Slack gives up after 3 s), p50/p99/max;
- answer: until the reply reached the response_url, p50/p99/max;
- tick lag: how late the engine's 1 s tick started while the requests ran, p99/max
  (against the same App with no requests: `idle`).

Cases, in one run so that they compare:
- `bolt-baseline`: a bare slack_bolt AsyncApp on the same server, whose listener acks
  and responds "ok": what the library and the HTTP stack cost;
- `idle`: the App with no Slack traffic (tick lag only);
- `status`: `/beamwatch status` (500 checks read from the store, Block Kit built);
- `ack`: `/beamwatch ack CHECK` of a check in alarm: queued, applied by the engine
  within a tick, the answer once applied.

    .venv/bin/python bench/slack.py                   # 300 requests a case
    .venv/bin/python bench/slack.py --requests 100 --clients 4

Results: bench/results/slack.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
from fastapi import Request  # noqa: E402  # at module level: FastAPI resolves annotations here

from tests.support import slack_requests as req  # noqa: E402
from tests.support.fake_slack import FakeSlack  # noqa: E402

OUT = HERE / "results" / "slack.json"
SECRET = "bench-signing-secret-0123456789ab"


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def summary(values: list[float]) -> dict:
    ms = [v * 1000 for v in values]
    return {"p50_ms": round(pct(ms, 0.5), 1), "p99_ms": round(pct(ms, 0.99), 1),
            "max_ms": round(max(ms), 1) if ms else None, "n": len(ms)}


def write_config(tmp: Path, api: str, checks: int) -> Path:
    lines = [f"""beamline: BENCH
storage: {{url: "sqlite:///{tmp / 'bw.db'}"}}
monitor: {{checks: false}}
web: {{listen: "127.0.0.1:0"}}
slack: {{mode: http, bot_token: xoxb-bench, signing_secret: "{SECRET}", api_url: "{api}",
         roles: {{operator: ["*"]}}}}
checks:"""]
    for i in range(checks):
        lines.append(f"  - {{id: c-{i}, group: g{i % 20}, pv: \"BENCH:{i}\", "
                     "above: {minor: 50, major: 90}}")
    path = tmp / "bw.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


async def feed(source, checks: int, stop: asyncio.Event) -> None:
    """Every PV twice a second; c-0 stays in alarm (something to ack)."""
    n = 0
    while not stop.is_set():
        for i in range(checks):
            source.push(f"BENCH:{i}", 95.0 if i == 0 else 20.0 + (n + i) % 10)
        n += 1
        await asyncio.sleep(0.5)


async def fire(url: str, bodies: list[str], clients: int, fake: FakeSlack,
               names: list[str]) -> tuple[list[float], list[float]]:
    import httpx

    acks: list[float] = []
    answers: list[float] = []
    queue: asyncio.Queue = asyncio.Queue()
    for item in zip(bodies, names, strict=True):
        queue.put_nowait(item)

    async def client() -> None:
        async with httpx.AsyncClient(timeout=30) as http:
            while not queue.empty():
                body, name = queue.get_nowait()
                t0 = time.monotonic()
                r = await http.post(url, content=body, headers=req.signed(SECRET, body))
                assert r.status_code == 200, r.text
                acks.append(time.monotonic() - t0)
                while not fake.responses(name):  # not a thread per wait: see Commands
                    await asyncio.sleep(0.002)
                answers.append(time.monotonic() - t0)

    await asyncio.gather(*(client() for _ in range(clients)))
    return acks, answers


async def app_cases(args, fake: FakeSlack) -> dict:
    from beamwatch import slack as slack_bot
    from beamwatch.app import App
    from beamwatch.sources.soft import SoftSource
    from beamwatch.web.server import for_app

    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        source = SoftSource("ca")
        app = App(write_config(Path(tmp), fake.url, args.checks), sources={"ca": source})
        bot = slack_bot.for_app(app)
        web = for_app(app, slack=bot)
        ticks: list[float] = []
        real_tick = app._tick

        async def tick() -> None:
            ticks.append(time.monotonic())
            await real_tick()

        app._tick = tick
        stop = asyncio.Event()
        running = asyncio.create_task(app.run(services=[web.serve, bot.serve]))
        feeding = asyncio.create_task(feed(source, args.checks, stop))
        await asyncio.sleep(args.warmup)

        def lag(since: int) -> dict:
            gaps = [b - a - 1.0 for a, b in zip(ticks[since:], ticks[since + 1:], strict=False)]
            return summary([max(0.0, g) for g in gaps])

        start = len(ticks)
        await asyncio.sleep(args.idle)
        out["idle"] = {"tick_lag": lag(start)}
        url = web.url + "/slack/events"
        for case, text in (("status", "status"), ("ack", "ack c-0")):
            start = len(ticks)
            names = [f"{case}-{i}" for i in range(args.requests)]
            bodies = [req.slash(text, "U0BENCH", fake.response_url(n)) for n in names]
            t0 = time.monotonic()
            acks, answers = await fire(url, bodies, args.clients, fake, names)
            wall = time.monotonic() - t0
            await asyncio.sleep(1.5)  # the tick after the burst counts too
            out[case] = {"ack": summary(acks), "answer": summary(answers),
                         "requests_per_s": round(len(bodies) / wall, 1),
                         "tick_lag": lag(start)}
            print(case, out[case], flush=True)
        stop.set()
        feeding.cancel()
        app.stop()
        await running
    return out


async def bolt_baseline(args, fake: FakeSlack) -> dict:
    """slack_bolt alone on the same server: ack, respond "ok"."""
    from fastapi import FastAPI
    from slack_bolt.adapter.starlette.async_handler import AsyncSlackRequestHandler
    from slack_bolt.async_app import AsyncApp
    from slack_sdk.web.async_client import AsyncWebClient

    from beamwatch.web.server import WebServer, bind

    bolt = AsyncApp(client=AsyncWebClient(token="xoxb-bench", base_url=fake.url),
                    signing_secret=SECRET)

    @bolt.command("/beamwatch")
    async def command(ack, respond) -> None:
        await ack()
        await respond(text="ok")

    handler = AsyncSlackRequestHandler(bolt)
    api = FastAPI()

    @api.post("/slack/events")
    async def events(request: Request):
        return await handler.handle(request)

    server = WebServer(api, bind("127.0.0.1", 0))  # the same socket options as beamwatch's
    stop = asyncio.Event()
    serving = asyncio.create_task(server.serve(stop))
    await asyncio.sleep(0.5)
    names = [f"base-{i}" for i in range(args.requests)]
    bodies = [req.slash("status", "U0BENCH", fake.response_url(n)) for n in names]
    t0 = time.monotonic()
    acks, answers = await fire(server.url + "/slack/events", bodies, args.clients, fake, names)
    wall = time.monotonic() - t0
    stop.set()
    await serving
    result = {"ack": summary(acks), "answer": summary(answers),
              "requests_per_s": round(len(bodies) / wall, 1)}
    print("bolt-baseline", result, flush=True)
    return result


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--checks", type=int, default=500)
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--idle", type=float, default=10.0)
    args = parser.parse_args()
    with FakeSlack() as fake:
        cases = {"bolt-baseline": await bolt_baseline(args, fake)}
        cases.update(await app_cases(args, fake))
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps({
        "when": time.strftime("%Y-%m-%dT%H:%M:%S"), "machine": platform.platform(),
        "cpus": __import__("os").cpu_count(), "python": platform.python_version(),
        "requests": args.requests, "clients": args.clients, "checks": args.checks,
        "cases": cases}, indent=2) + "\n")
    print(f"written {OUT}")


if __name__ == "__main__":
    asyncio.run(main())
