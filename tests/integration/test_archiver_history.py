"""A check's past from an Archiver Appliance: a local archiver (pytest-httpserver)
checks the exact retrieval request (path, pv, from/to in the appliance's ISO form, a
mean_N post-processor for long spans) and replays recorded getData answers
(tests/data/archiver/). The values API gives archived rows before beamwatch's first
stored minute and stored ones after; the archiver away, slow or failing still gives
the stored minutes with a note; `beamwatch history --values` and the forecast
helper `points()` read the same."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest
from pytest_httpserver import HTTPServer
from typer.testing import CliRunner
from werkzeug import Response

from beamwatch.cli import app as cli
from beamwatch.config import load_config
from beamwatch.slack import plot
from beamwatch.sources import archiver
from beamwatch.sources.archiver import iso
from beamwatch.store import Store
from beamwatch.web.api import Backend
from beamwatch.web.app import create_app
from beamwatch.web.heartbeat import Beat

pytestmark = pytest.mark.integration

DATA = Path(__file__).parent.parent / "data" / "archiver"
PV = "EM2K0:XGMD:GPI:10:PRESS_RBV"  # the recorded gauge: 612 samples, 19:39:45–19:54:45
RECORDED = json.loads((DATA / "lcls_pressure.qw.json").read_text())
FIRST_STORED = 1610740500  # beamwatch's first minute: 19:55, just after the recording
NOW = FIRST_STORED + 5 * 60
PATH = "/retrieval/data/getData.json"
BIN = Path(sys.executable).parent / "beamwatch"


@pytest.fixture(autouse=True)
def fresh_cache():
    archiver.CACHE.clear()  # one pytest-httpserver (one URL) serves every test
    yield
    archiver.CACHE.clear()


def write_config(tmp_path: Path, url: str, timeout: str = "5s") -> Path:
    path = tmp_path / "bw.yaml"
    path.write_text(f"""
beamline: TEST
storage: {{url: "sqlite:///{tmp_path / 'bw.db'}"}}
web: {{listen: "off"}}
monitor: {{checks: false}}
sources:
  arch: {{kind: archiver, url: "{url}", timeout: {timeout}}}
checks:
  - {{id: gauge, pv: "{PV}", above: {{major: 1e-2}}}}
  - {{id: mode, pv: "BL04I:MODE", archive: {{pv: "CS-CS-MSTAT-01:MODE"}}}}
  - {{id: local-only, pv: "BL04I:LOCAL", archive: false}}
""")
    return path


def store_minutes(path: Path, check: str = "gauge", first: float = FIRST_STORED,
                  n: int = 5) -> Store:
    """The minutes beamwatch itself stored, from `first` on (values 1.0, 2.0, …)."""
    store = Store(load_config(path).storage.url)
    m0 = int(first // 60)
    store.save_history([{"check_id": check, "minute": m0 + i, "vmin": float(i + 1),
                         "vmax": float(i + 1), "vlast": float(i + 1), "count": 60,
                         "connected": True} for i in range(n)])
    return store


def client(path: Path, store: Store, now: float = NOW) -> httpx.AsyncClient:
    """The API in process (its endpoints run in worker threads, as when served)."""
    config = load_config(path)
    app = create_app(receive_beat=lambda *_: Beat.UNKNOWN, verdict=lambda: (True, "ok"),
                     backend=Backend(lambda: config, store, lambda _: [], clock=lambda: now))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bw")


async def values(http: httpx.AsyncClient, check: str, since: str) -> dict:
    answer = await http.get(f"/api/checks/{check}/values", params={"since": since})
    assert answer.status_code == 200, answer.text
    return answer.json()


def recorded_minutes() -> dict[int, tuple[float, float, float]]:
    """The recording's (min, max, last) per minute, worked out here from the raw JSON."""
    out: dict[int, list[float]] = {}
    for row in RECORDED[0]["data"]:
        out.setdefault(int(row["millis"] // 60000) * 60, []).append(row["val"])
    return {t: (min(v), max(v), v[-1]) for t, v in out.items()}


async def test_values_are_archived_before_the_first_stored_minute_and_stored_after(
        tmp_path, httpserver: HTTPServer):
    since = NOW - 30 * 60
    httpserver.expect_request(PATH, method="GET", query_string={
        "pv": PV, "from": iso(since - since % 60), "to": iso(FIRST_STORED)},
    ).respond_with_json(RECORDED)
    path = write_config(tmp_path, httpserver.url_for("/"))
    async with client(path, store_minutes(path)) as http:
        answer = await http.get("/api/checks/gauge/values", params={"since": "30m"})
        again = await http.get("/api/checks/gauge/values", params={"since": "30m"})
    httpserver.check_assertions()
    assert answer.status_code == 200
    body = answer.json()
    archived = [r for r in body["minutes"] if r["archived"]]
    stored = [r for r in body["minutes"] if not r["archived"]]
    expected = recorded_minutes()
    assert [r["time"] for r in archived] == sorted(expected)
    for r in archived:
        assert (r["vmin"], r["vmax"], r["vlast"]) == pytest.approx(expected[r["time"]])
        assert r["time"] < FIRST_STORED and r["span"] == 60 and r["connected"] is True
    assert sum(r["count"] for r in archived) == 612
    assert [(r["time"], r["vlast"]) for r in stored] == [
        (FIRST_STORED + 60 * i, float(i + 1)) for i in range(5)]
    assert body["archive"].startswith(f"archived: arch ({PV}), 16 rows (raw) before")
    assert body["archive_ok"] is True
    # a dashboard refresh is answered from the cache: the archiver was asked once
    assert again.json() == body and len(httpserver.log) == 1


async def test_a_long_span_asks_for_one_mean_per_bin_not_every_sample(tmp_path, httpserver):
    since = NOW - 72 * 3600
    lo, hi, every = archiver.plan(since, FIRST_STORED)
    assert every == 180
    httpserver.expect_request(PATH, query_string={
        "pv": f"mean_180({PV})", "from": iso(lo), "to": iso(hi)}).respond_with_json(RECORDED)
    path = write_config(tmp_path, httpserver.url_for("/"))
    async with client(path, store_minutes(path)) as http:
        body = await values(http, "gauge", "72h")
    httpserver.check_assertions()
    archived = [r for r in body["minutes"] if r["archived"]]
    assert {r["span"] for r in archived} == {180}
    assert all(r["time"] % 180 == 0 for r in archived)
    assert "mean per 3 min" in body["archive"]


async def test_the_archiver_away_still_answers_the_stored_minutes_with_a_note(tmp_path):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    path = write_config(tmp_path, f"http://127.0.0.1:{port}")
    async with client(path, store_minutes(path)) as http:
        answer = await http.get("/api/checks/gauge/values", params={"since": "30m"})
    assert answer.status_code == 200
    body = answer.json()
    assert [r["vlast"] for r in body["minutes"]] == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert body["archive_ok"] is False
    assert body["archive"].startswith(
        f"archived data unavailable: archiver http://127.0.0.1:{port}/retrieval/data/"
        f"getData.json unreachable for {PV}: ConnectError")


async def test_a_hung_archiver_costs_one_timeout_then_the_failure_is_remembered(tmp_path,
                                                                        httpserver):
    release = threading.Event()

    def hang(request):
        release.wait(5)
        return Response("[]", content_type="application/json")

    httpserver.expect_request(PATH).respond_with_handler(hang)
    path = write_config(tmp_path, httpserver.url_for("/"), timeout="300ms")
    try:
        async with client(path, store_minutes(path)) as http:
            first = await values(http, "gauge", "30m")
            second = await values(http, "gauge", "30m")
    finally:
        release.set()
    assert first["archive"] == (f"archived data unavailable: archiver "
                                f"{httpserver.url_for('/retrieval/data/getData.json')} did "
                                f"not answer for {PV} within 0.3s")
    assert [r["vlast"] for r in first["minutes"]] == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert second == first and len(httpserver.log) <= 1  # not asked again


async def test_an_archiver_error_and_an_unknown_pv_are_said_not_raised(tmp_path, httpserver):
    path = write_config(tmp_path, httpserver.url_for("/"))
    store = store_minutes(path)
    httpserver.expect_oneshot_request(PATH).respond_with_data(
        "Exception retrieving data", status=500)
    async with client(path, store) as http:
        failed = await values(http, "gauge", "30m")
    assert failed["archive"].endswith(f"answered HTTP 500 for {PV}: Exception retrieving data")
    archiver.CACHE.clear()
    httpserver.expect_oneshot_request(PATH).respond_with_data("", status=404)
    async with client(path, store) as http:
        unknown = await values(http, "gauge", "30m")
    assert unknown["archive"].startswith(f"archived: arch ({PV}) has no values before")
    assert unknown["archive_ok"] is True
    assert len(unknown["minutes"]) == 5


async def test_a_check_reads_its_archive_override_and_an_opted_out_check_asks_nobody(
        tmp_path, httpserver):
    body = (DATA / "dls_enum_event.json").read_text()  # recorded 2021-07-10 02:25:18
    first = (1625883918 // 60 + 2) * 60  # beamwatch started two minutes later
    httpserver.expect_request(PATH, query_string={
        "pv": "CS-CS-MSTAT-01:MODE", "from": iso(first - 1800), "to": iso(first)},
    ).respond_with_data(body, content_type="application/json")
    path = write_config(tmp_path, httpserver.url_for("/"))
    store = store_minutes(path, "mode", first)
    store_minutes(path, "local-only", first)
    async with client(path, store, now=first + 300) as http:
        mode = await values(http, "mode", "35m")
        local = await values(http, "local-only", "35m")
    httpserver.check_assertions()
    [archived] = [r for r in mode["minutes"] if r["archived"]]
    assert archived["vlast"] == "User"  # the enum's label, as the CA source gives it
    assert local["archive"] is None and len(httpserver.log) == 1


def test_the_slack_plot_draws_archived_and_stored_rows(tmp_path, httpserver):
    httpserver.expect_request(PATH).respond_with_json(RECORDED)
    path = write_config(tmp_path, httpserver.url_for("/"))
    from beamwatch.api import past

    got = past.values(load_config(path), store_minutes(path), "gauge", NOW - 1800, NOW)
    image = plot.png("gauge", got.rows, [], "UTC", NOW - 1800, NOW)
    assert image is not None and image.startswith(b"\x89PNG")
    only_archived = [r for r in got.rows if r["archived"]]
    assert plot.png("gauge", only_archived, [], "UTC", NOW - 1800, NOW) is not None


async def test_slack_history_plots_the_archived_past_and_says_when_it_is_missing(
        tmp_path, httpserver):
    from beamwatch.slack.commands import Caller, Commands
    from beamwatch.slack.grammar import parse as parse_command
    from beamwatch.slack.roles import Role

    async def no_reads(name):
        raise LookupError(name)

    path = write_config(tmp_path, httpserver.url_for("/"))
    store = store_minutes(path)
    config = load_config(path)
    commands = Commands(lambda: config, store, no_reads, clock=lambda: NOW)
    viewer = Caller("U0VIEW", "viewer", None, Role.VIEWER)
    httpserver.expect_oneshot_request(PATH).respond_with_json(RECORDED)
    reply = await commands.run(parse_command("history gauge 30m"), viewer)
    assert reply.ok and reply.png is not None and reply.png.startswith(b"\x89PNG")
    assert f"archived: arch ({PV}), 16 rows (raw)" in json.dumps(reply.blocks)
    archiver.CACHE.clear()
    httpserver.clear()  # now nobody answers: a 500 from pytest-httpserver
    away = await commands.run(parse_command("history gauge 30m"), viewer)
    assert away.ok and away.png is not None  # the stored minutes still plotted
    assert "archived data unavailable: archiver" in json.dumps(away.blocks)


def test_points_for_a_forecast_are_the_archived_numbers_of_a_span(tmp_path, httpserver):
    start, end = FIRST_STORED - 1200, FIRST_STORED
    httpserver.expect_request(PATH, query_string={
        "pv": PV, "from": iso(start), "to": iso(end)}).respond_with_json(RECORDED)
    config = load_config(write_config(tmp_path, httpserver.url_for("/")))
    got = archiver.points(config, "gauge", start, end)
    httpserver.check_assertions()
    assert len(got) == 612
    assert got[0] == pytest.approx((1610739585.509, 0.005249832756817341))
    assert all(isinstance(v, float) for _, v in got)


def test_history_values_on_the_command_line(tmp_path, httpserver):
    """`beamwatch history --values` in its own process (real time): the archiver is
    asked for the time before the first stored minute, in the appliance's form."""
    import time

    now = time.time()
    first = (int(now // 60) - 5) * 60
    shift = first - 30 - RECORDED[0]["data"][-1]["millis"] / 1000  # ends 30 s before
    replay = [{**RECORDED[0], "data": [{**r, "millis": r["millis"] + shift * 1000}
                                       for r in RECORDED[0]["data"]]}]
    asked = []

    def answer(request):
        asked.append(dict(request.args))
        return Response(json.dumps(replay), content_type="application/json")

    httpserver.expect_request(PATH).respond_with_handler(answer)
    path = write_config(tmp_path, httpserver.url_for("/"))
    store_minutes(path, first=first).close()
    run = subprocess.run([str(BIN), "history", "-c", str(path), "--values", "--check",
                          "gauge", "--since", "1h", "--json"],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    body = json.loads(run.stdout)
    [request] = asked
    assert request["pv"] == PV and request["to"] == iso(first)
    assert request["from"].endswith(":00.000Z")
    archived = [r for r in body["minutes"] if r["archived"]]
    assert sum(r["count"] for r in archived) == 612
    assert all(r["time"] < first for r in archived)
    assert [r["vlast"] for r in body["minutes"] if not r["archived"]] == [1.0, 2.0, 3.0,
                                                                         4.0, 5.0]
    table = subprocess.run([str(BIN), "history", "-c", str(path), "--values", "--check",
                            "gauge", "--since", "1h"], capture_output=True, text=True,
                           timeout=60, env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"})
    assert table.returncode == 0, table.stderr
    assert "archiver" in table.stdout and "store" in table.stdout
    assert f"archived: arch ({PV})" in table.stdout
    nocheck = CliRunner().invoke(cli, ["history", "-c", str(path), "--values"])
    assert nocheck.exit_code != 0
    assert "--values needs --check ID" in nocheck.output
