"""Heartbeats in: the source's ages on a fake clock, the checks they feed, the config
sugar, and the HTTP answers of the one ASGI app (in process, through httpx)."""

from __future__ import annotations

import httpx
import pytest

from beamwatch.checks.evaluate import Check, CheckInput
from beamwatch.clock import FakeClock
from beamwatch.config import ConfigError
from beamwatch.config.schema import CheckConfig, Config, WebConfig
from beamwatch.model import Severity
from beamwatch.sources.heartbeat import Beat, HeartbeatSource
from beamwatch.web import create_app

CONFIG = Config.model_validate({
    "beamline": "T",
    "checks": [{"id": "collector", "heartbeat": "2s", "token": "s3cret"},
               {"id": "open", "heartbeat": "1m"},
               {"id": "vac", "pv": "X:P", "above": {"major": 1}}],
})


def judged(source: HeartbeatSource, check_id: str, now: float):
    """The check's verdict on the source's sample for it at `now`."""
    check = Check(CONFIG.check(check_id), CONFIG.check_ids)
    inp = CheckInput(started=source.started)
    inp.update(source.sample(check_id, now))
    return check.evaluate(inp, now)


@pytest.fixture
def source() -> HeartbeatSource:
    src = HeartbeatSource.from_config("heartbeat", CONFIG, FakeClock())
    src.subscribe(["collector", "open"])
    return src


def test_heartbeat_alone_means_major_past_its_period():
    assert CONFIG.check("collector").above.major == 2.0
    own = CheckConfig.model_validate({"id": "c", "heartbeat": "5m", "above": {"minor": 60}})
    assert own.above.major is None and own.above.minor == 60  # an explicit above: wins


def test_a_period_of_zero_is_refused():
    with pytest.raises(ValueError, match="more than 0s"):
        CheckConfig.model_validate({"id": "c", "heartbeat": 0})


def test_web_listen_is_host_port_or_off():
    assert WebConfig(listen="127.0.0.1:0").address == ("127.0.0.1", 0)
    assert WebConfig(listen="[::1]:8080").address == ("::1", 8080)
    assert WebConfig(listen="off").address is None
    with pytest.raises(ValueError, match="not HOST:PORT"):
        WebConfig(listen="8080")


def test_bad_listen_is_a_config_error(tmp_path):
    from beamwatch.config import load_config

    path = tmp_path / "bw.yaml"
    path.write_text("beamline: T\nweb: {listen: 'localhost'}\n")
    with pytest.raises(ConfigError, match="web.listen"):
        load_config(path)


def test_no_alarm_until_a_period_after_start(source):
    clock = source.clock
    start = clock.now()
    assert judged(source, "collector", start + 2).severity == Severity.OK
    late = judged(source, "collector", start + 2.5)
    assert late.severity == Severity.MAJOR
    assert "no beat since beamwatch started 2s ago" in late.message


def test_a_beat_resets_the_age_and_its_message_is_shown(source):
    clock = source.clock
    clock.advance(10)
    assert source.receive("collector", "s3cret", "run 7 finished") is Beat.ACCEPTED
    now = clock.advance(1)
    ok = judged(source, "collector", now)
    assert ok.severity == Severity.OK and ok.value == 1.0
    assert "last beat 1s ago: run 7 finished" in ok.message
    stopped = judged(source, "collector", clock.advance(2))
    assert stopped.severity == Severity.MAJOR and "run 7 finished" in stopped.message


def test_a_wrong_or_missing_token_records_nothing(source):
    assert source.receive("collector", "guess", None) is Beat.BAD_TOKEN
    assert source.receive("collector", None, None) is Beat.BAD_TOKEN
    assert source.receive("nope", None, None) is Beat.UNKNOWN
    assert source.receive("vac", None, None) is Beat.NOT_HEARTBEAT
    assert source.last == {}
    assert source.receive("open", None, None) is Beat.ACCEPTED  # no token: open


def test_restore_keeps_recent_and_alarming_beats_only(source):
    now = source.clock.now()
    source.restore({"collector": now - 1.5, "open": now - 3600}, alarming=set())
    assert source.last["collector"][0] == now - 1.5  # its alarm is not put off
    assert "open" not in source.last  # long gone: a period's grace from now
    fresh = HeartbeatSource("heartbeat", CONFIG, source.clock)
    fresh.restore({"open": now - 3600}, alarming={"open"})  # stays MAJOR, no flicker
    assert fresh.last["open"][0] == now - 3600


def test_emitted_batches_reach_the_sink(source):
    got = []
    source._sink = got.extend
    source.receive("open", None, "hi")
    assert [s.address for s in got] == ["open"] and got[0].value == 0
    source.emit_ages()
    assert sorted(s.address for s in got[1:]) == ["collector", "open"]


# -- the HTTP answers (the app in process; the served one: tests/integration) ----------


def client(source: HeartbeatSource, healthy: bool = True) -> httpx.AsyncClient:
    app = create_app(receive_beat=source.receive,
                     verdict=lambda: (healthy, "healthy" if healthy else "store failing"))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bw")


async def test_http_answers(source):
    async with client(source) as http:
        auth = {"Authorization": "Bearer s3cret"}
        r = await http.post("/api/heartbeat/collector", headers=auth, content=b"run 7")
        assert r.status_code == 200 and r.json() == {"check": "collector", "status": "accepted"}
        assert source.last["collector"][1] == "run 7"
        r = await http.post("/api/heartbeat/collector", headers={"Authorization": "Bearer x"})
        assert r.status_code == 401 and "wrong bearer token" in r.json()["error"]
        assert r.headers["www-authenticate"] == "Bearer"
        r = await http.post("/api/heartbeat/nope")
        assert r.status_code == 404 and r.json() == {"error": "unknown check 'nope'"}
        r = await http.post("/api/heartbeat/vac")
        assert r.status_code == 400 and "not a heartbeat check" in r.json()["error"]
        r = await http.post("/api/heartbeat/open", content=b"x" * 5000)
        assert r.status_code == 413
        r = await http.post("/api/heartbeat/open", json={"job": 42, "state": "done"})
        assert r.status_code == 200
        assert source.last["open"][1] == '{"job":42,"state":"done"}'
        r = await http.get("/api/heartbeat/open")
        assert r.status_code == 405 and "error" in r.json()


async def test_a_refused_body_is_not_a_beat(source):
    async with client(source) as http:
        r = await http.post("/api/heartbeat/open", content=b"x" * 5000)
    assert r.status_code == 413 and "open" not in source.last


async def test_healthz(source):
    async with client(source) as http:
        r = await http.get("/healthz")
        assert r.status_code == 200 and r.json() == {"status": "ok", "reason": "healthy"}
    async with client(source, healthy=False) as http:
        r = await http.get("/healthz")
        assert r.status_code == 503
        assert r.json() == {"status": "unhealthy", "reason": "store failing"}


def test_a_beat_finds_a_check_added_by_a_reload():
    """check() is indexed by id: the index follows a config whose checks changed."""
    source = HeartbeatSource("heartbeat", CONFIG, FakeClock())
    assert source.receive("late", None, None) is Beat.UNKNOWN
    late = CheckConfig.model_validate({"id": "late", "heartbeat": "1m"})
    source.reconfigure(CONFIG.model_copy(update={"checks": [*CONFIG.checks, late]}))
    assert source.receive("late", None, None) is Beat.ACCEPTED
    assert CONFIG.check("open").heartbeat is not None
    with pytest.raises(KeyError):
        CONFIG.check("late")  # the first config is unchanged


async def test_a_restart_takes_back_the_last_beat_of_heartbeat_checks_only(tmp_path):
    """From the store's latest values (the age at its time): a PV check's value is no
    beat (with 100k of them, looking each up in the config took hours)."""
    from beamwatch.app import App
    from beamwatch.config import load_config
    from beamwatch.sources.soft import SoftSource
    from beamwatch.store import Store
    from beamwatch.store.store import LatestValue

    path = tmp_path / "bw.yaml"
    path.write_text(f"""
beamline: T
storage: {{url: "sqlite:///{tmp_path / 'bw.db'}"}}
checks:
  - {{id: collector, heartbeat: 10m}}
  - {{id: vac, pv: "X:P", above: {{major: 1}}}}
""")
    clock = FakeClock()
    store = Store(f"sqlite:///{tmp_path / 'bw.db'}")
    now = clock.now()
    store.save_latest([LatestValue("collector", now - 10, 20.0, Severity.OK, True, None, ""),
                       LatestValue("vac", now - 10, 0.5, Severity.OK, True, None, "")])
    store.close()
    config = load_config(path)
    hearts = HeartbeatSource("heartbeat", config, clock)
    app = App(path, clock, {"ca": SoftSource("ca", clock), "heartbeat": hearts}, config=config)
    await app.start()
    try:
        assert hearts.last == {"collector": (now - 30, None)}
    finally:
        await app.close()


def test_the_latest_values_of_some_checks_are_read_alone_in_slices(tmp_path):
    """What a restart reads for its heartbeats: their rows only, more than one slice of
    ids (SQLite limits bound values), none of the 100k others."""
    from beamwatch.store import Store
    from beamwatch.store.store import LatestValue

    store = Store(f"sqlite:///{tmp_path / 'bw.db'}")
    store.save_latest([LatestValue(f"c{i}", 100.0, float(i), Severity.OK, True, None, "")
                       for i in range(3000)])
    wanted = {f"c{i}" for i in range(0, 3000, 2)} | {"not-stored"}
    got = store.latest(wanted)
    assert set(got) == wanted - {"not-stored"}
    assert got["c2998"].value == 2998.0
    assert store.latest(set()) == {} and len(store.latest()) == 3000
    store.close()
