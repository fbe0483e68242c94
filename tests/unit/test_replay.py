"""`beamwatch replay`: a live run writes the log (a real App, SoftSource, FakeClock, a
dry registry), then configs are replayed over it and compared."""

from __future__ import annotations

import asyncio
import json

import pytest
import typer
from typer.testing import CliRunner

from beamwatch.api.replay import BOTH, ONLY_NEW, ONLY_OLD, Notice, compare, replay
from beamwatch.api.replay.reconstruct import _fill, _path, _times
from beamwatch.cli.replay import register
from beamwatch.config import load_config, parse_config
from beamwatch.store import Store
from beamwatch.store.noise import NoiseStore
from tests.support.live_log import run_live

T0 = 1_789_999_980.0  # a whole minute (2026-09-21 14:13 UTC)
LIVE_FOR = 1800  # seconds of live run
DCM, GAUGE, SAMPLE = "BL04I-MO-DCM-01:TEMP1", "BL04I-VA-GAUGE-01:P", "BL04I-EA-SAMPLE-01:T"

CONFIG = """
beamline: I04
storage: {url: "sqlite:///{db}"}
modes: {names: [user, unattended, shutdown], default: user}
channels:
  hook: {kind: webhook, webhook_url: "http://127.0.0.1:9/hook"}
  oncall: {kind: webhook, webhook_url: "http://127.0.0.1:9/oncall"}
checks:
  - id: dcm-temp
    pv: BL04I-MO-DCM-01:TEMP1
    above: {minor: 120, major: 140}
    for: 30s
  - id: gauge
    pv: BL04I-VA-GAUGE-01:P
    above: {major: 1.0e-6}
  - id: sample-temp
    pv: BL04I-EA-SAMPLE-01:T
    above: {major: 200}
    modes: [user]
routes:
  - to: [channel:hook]
    repeat: 10m
"""


def live_script(t: int) -> list[tuple[str, object, bool]]:
    """(pv, value, connected) pushed at second t of the live run."""
    out: list[tuple[str, object, bool]] = []
    if t == 0:
        out += [(DCM, 100.0, True), (SAMPLE, 50.0, True)]
    if t == 300:
        out.append((DCM, 150.0, True))  # alarm at 330 (for: 30s), acked at 700
    if t == 900:
        out.append((DCM, 100.0, True))  # clear at 930
    if t == 1010:
        out.append((SAMPLE, 250.0, True))  # during the shutdown override: muted
    if t == 1100:
        out.append((SAMPLE, 50.0, True))
    if t == 1500:
        out.append((GAUGE, None, False))  # lost until 1620: an INVALID alarm at 1510
    if t % 10 == 0 and not 1500 <= t < 1620:
        out.append((GAUGE, 1e-5 if 1200 <= t < 1260 else 1e-8, True))  # 1200: silenced
    return out


def live_actions(t: int, app, clock) -> None:
    """The ack, the mode override and the silence of the live run."""
    if t == 700:
        app.engine.acknowledge("dcm-temp", "ana")
    if t == 1000:
        NoiseStore(app.store).set_override("shutdown", author="ops", reason="test", until=T0 + 1300,
                           now=clock.now())
    if t == 1150:
        NoiseStore(app.store).add_silence(["check=gauge"], start=clock.now(), end=T0 + 1300,
                          author="ana", reason="pump work", now=clock.now())


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    """The live log (built once: a live run is the slow part)."""
    folder = tmp_path_factory.mktemp("live")
    path = folder / "bw.yaml"
    path.write_text(CONFIG.replace("{db}", str(folder / "bw.db")))
    asyncio.run(run_live(path, T0, LIVE_FOR, live_script, live_actions))
    config = load_config(path)
    store = Store(config.storage.url, migrate=False)
    yield path, config, store
    store.close()


def variant(live, old: str, new: str):
    path, config, _ = live
    text = path.read_text()
    assert old in text
    return parse_config(text.replace(old, new), base=path.parent)


def run(live, config=None, since=T0, until=T0 + LIVE_FOR, **kw):
    path, same, store = live
    return replay(config or same, store, since, until, config_path=path, **kw)


def table(report) -> list[tuple[str, str, str, str]]:
    return [(r.check_id, r.receiver, r.kind, r.verdict) for r in report.rows]


def test_the_live_log_is_what_the_replays_compare_with(live):
    _, _, store = live
    from beamwatch.store.outbox import Outbox

    sent = [(r["check_id"], r["kind"], r["receiver"]) for r in Outbox(store).rows()
            if r["status"] == "sent"]
    assert ("dcm-temp", "alarm", "channel:hook") in sent
    assert ("dcm-temp", "ack", "channel:hook") in sent
    assert ("gauge", "alarm", "channel:hook") in sent  # the disconnection, not the spike
    assert not any(c == "sample-temp" for c, _, _ in sent)  # muted by the mode


def test_the_same_config_reproduces_the_same_notifications(live):
    report = run(live)
    assert report.totals[ONLY_NEW] == report.totals[ONLY_OLD] == 0, table(report)
    assert sorted((c, k) for c, _, k, _ in table(report)) == [
        ("dcm-temp", "ack"), ("dcm-temp", "alarm"), ("dcm-temp", "resolve"),
        ("gauge", "alarm"), ("gauge", "resolve")]
    # the ack was replayed (no repeat at 930), the silence and the mode too (no page
    # for the gauge's spike nor for sample-temp); the disconnection was rebuilt
    gauge_alarm = next(r for r in report.rows if r.check_id == "gauge" and r.kind == "alarm")
    assert abs(gauge_alarm.new.time - (T0 + 1510)) <= 60
    assert report.replayed == ["dcm-temp", "gauge", "sample-temp"] and not report.no_data
    assert report.transitions_old > 0 and not report.empty


def test_a_raised_threshold_shows_the_alarm_as_only_old(live):
    config = variant(live, "above: {minor: 120, major: 140}", "above: {minor: 155, major: 160}")
    report = run(live, config)
    dcm = {(k, v) for c, _, k, v in table(report) if c == "dcm-temp"}
    assert dcm == {("alarm", ONLY_OLD), ("ack", ONLY_OLD), ("resolve", ONLY_OLD)}
    assert all(v == BOTH for c, _, _, v in table(report) if c == "gauge")
    assert report.totals[ONLY_NEW] == 0


def test_a_new_route_shows_its_receivers_as_only_new(live):
    config = variant(live, "  - to: [channel:hook]\n",
                     "  - to: [channel:hook, channel:oncall]\n")
    report = run(live, config)
    rows = table(report)
    oncall = {(c, k, v) for c, r, k, v in rows if r == "channel:oncall"}
    assert oncall == {("dcm-temp", "alarm", ONLY_NEW), ("dcm-temp", "ack", ONLY_NEW),
                      ("dcm-temp", "resolve", ONLY_NEW), ("gauge", "alarm", ONLY_NEW),
                      ("gauge", "resolve", ONLY_NEW)}
    assert all(v == BOTH for _, r, _, v in rows if r == "channel:hook")


def test_a_check_not_in_the_log_has_no_data_and_never_alarms(live):
    config = variant(live, "routes:", """  - id: new-gauge
    pv: BL04I-VA-GAUGE-09:P
    above: {major: 1.0e-6}
routes:""")
    report = run(live, config)
    assert report.no_data == ["new-gauge"]
    assert not any(r.check_id == "new-gauge" for r in report.rows)
    assert report.totals[ONLY_NEW] == report.totals[ONLY_OLD] == 0


def test_a_config_with_heartbeat_and_alertmanager_checks_replays(live):
    config = variant(live, "routes:", """  - {id: collector, heartbeat: 5m}
  - {id: ws1-down, alert: {alertname: NodeDown}}
routes:""")
    report = run(live, config)
    assert sorted(report.no_data) == ["collector", "ws1-down"]


def test_an_empty_period_says_so(live):
    report = run(live, since=T0 + 3 * 86400, until=T0 + 3 * 86400 + 3600)
    assert report.empty and report.rows == []
    assert report.notes[0].startswith("nothing to replay")
    data = json.loads(report.to_json())
    assert data["empty"] is True and data["totals"]["would_notify"] == 0


def test_nothing_is_sent(live, monkeypatch):
    from beamwatch.notify.webhook import WebhookNotifier

    calls = []

    async def send(self, message):
        calls.append(message)
        raise AssertionError("a replay must not send")

    monkeypatch.setattr(WebhookNotifier, "send", send)
    report = run(live)
    assert calls == [] and report.would_notify > 0


def test_the_command_prints_a_table_and_json(live):
    path, _, _ = live
    app = typer.Typer()

    @app.callback()
    def main() -> None:
        pass

    register(app)
    args = ["replay", "-c", str(path), "--since", "2026-09-21T14:13",
            "--until", "2026-09-21T14:43"]
    result = CliRunner().invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["totals"]["only_new"] == data["totals"]["only_old"] == 0
    assert data["totals"]["both"] == 5 and len(data["rows"]) == 5
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "dcm-temp" in result.output and "would notify 5, was notified 5" in result.output
    result = CliRunner().invoke(app, [*args[:3], "--since", "1h", "--until", "2h"])
    assert result.exit_code == 2 and "--until must be after --since" in result.output


# --- the pieces --------------------------------------------------------------------------


def test_a_minute_becomes_the_smoothest_path_through_min_max_last():
    row = {"vmin": 10.0, "vmax": 50.0, "vlast": 20.0, "count": 5}
    assert _path(12.0, row) == [10.0, 50.0, 20.0]  # near extreme first
    assert _path(48.0, row) == [50.0, 10.0, 20.0]
    assert _path(None, {"vmin": 1.0, "vmax": 1.0, "vlast": 1.0, "count": 3}) == [1.0]
    assert _path(5.0, {"vmin": 5.0, "vmax": 9.0, "vlast": 9.0, "count": 2}) == [5.0, 9.0]
    assert _path(1.0, {"vmin": None, "vmax": None, "vlast": "Open", "count": 4}) == ["Open"]


def test_an_anchor_puts_its_value_at_its_time_and_the_others_next_to_it():
    assert _times([10.0, 50.0, 20.0], 0.0, 60.0, None, 3) == [10.0, 30.0, 50.0]
    assert _times([10.0, 50.0, 20.0], 0.0, 60.0, None, 30) == [28.0, 30.0, 32.0]  # brief
    assert _times([10.0, 50.0, 20.0], 0.0, 60.0, (41.0, 50.0), 30) == [39.0, 41.0, 43.0]


def test_a_stale_check_gets_updates_as_often_as_the_live_pv_had_them():
    samples = _fill([(28.0, 1.0), (30.0, 2.0), (32.0, 3.0)], 0.0, 0.0, 60.0, 3)
    times = [0.0] + [t for t, _ in samples] + [60.0]
    assert max(b - a for a, b in zip(times, times[1:], strict=False)) <= 20.0
    assert [v for _, v in samples] == [0.0, 1.0, 2.0, 3.0, 3.0]


def notice(t: float, kind: str = "alarm", receiver: str = "channel:hook") -> Notice:
    return Notice(t, t, "c", None, receiver, receiver, kind, "sent")


def test_compare_pairs_within_the_tolerance_in_time_order():
    rows = compare([notice(100), notice(1000), notice(5000)],
                   [notice(130), notice(2000), notice(5000, receiver="channel:x")], 60)
    got = [(r.time, r.receiver, r.verdict) for r in rows]
    assert got == [(130, "channel:hook", BOTH), (1000, "channel:hook", ONLY_NEW),
                   (2000, "channel:hook", ONLY_OLD), (5000, "channel:hook", ONLY_NEW),
                   (5000, "channel:x", ONLY_OLD)]
