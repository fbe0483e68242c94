"""Noise control made durable: NoiseStore (silences, mode overrides, the mode change
log, incidents), migration 0002, and the service functions of api/noise.py."""

from __future__ import annotations

import itertools
import textwrap
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from beamwatch.api import noise as api
from beamwatch.config.loader import load_config
from beamwatch.engine.deps import DependencyGraph
from beamwatch.engine.incidents import FailingCheck, Incident, IncidentKind, IncidentTracker
from beamwatch.engine.modes import ModeChange, ModeProblem, ModeSource, ModeTracker, Override
from beamwatch.engine.mute import Alert
from beamwatch.engine.silences import Matcher, SilenceError, SilenceMuter
from beamwatch.model import Severity
from beamwatch.store import Store
from beamwatch.store import tables as t
from beamwatch.store.migrate import HEAD, alembic_config, upgrade
from beamwatch.store.noise import NoiseStore

NOISE_TABLES = {"silences", "mode_overrides", "mode_changes", "incidents"}
T0 = 1_800_000_000.0  # 2027-01-15 08:00 UTC


@pytest.fixture()
def store(tmp_path):
    s = Store(f"sqlite:///{tmp_path / 'bw.db'}")
    yield s
    s.close()


@pytest.fixture()
def ns(store):
    return NoiseStore(store)


@pytest.fixture()
def config(tmp_path):
    path = tmp_path / "i04.yaml"
    path.write_text(textwrap.dedent(f"""\
        beamline: I04
        timezone: Europe/London
        storage: {{url: "sqlite:///{tmp_path / 'bw.db'}"}}
        modes: {{names: [user, unattended, maintenance, shutdown], default: user}}
        checks:
          - {{id: fe-vacuum, pv: "FE:1", group: vacuum, labels: {{area: frontend}}}}
          - {{id: fe-shutter, pv: "FE:2", group: frontend, modes: [user, unattended]}}
          - {{id: dcm-temp, pv: "DCM:1", group: optics}}
          - {{id: dcm-flow, pv: "DCM:2", group: optics}}
        """))
    return load_config(path)


# --- migration 0002 ----------------------------------------------------------------------------


def test_upgrade_from_empty_to_head_matches_the_tables(tmp_path):
    eng = create_engine(f"sqlite:///{tmp_path / 'm.db'}")
    upgrade(eng)
    assert NOISE_TABLES <= set(inspect(eng).get_table_names())
    with eng.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), t.metadata) == []
        assert MigrationContext.configure(conn).get_current_revision() == HEAD
    indexes = {i["name"] for name in NOISE_TABLES for i in inspect(eng).get_indexes(name)}
    assert indexes == {"ix_silences_ends", "ix_mode_overrides_until", "ix_mode_changes_time",
                       "ix_incidents_opened", "ix_incidents_resolved"}
    eng.dispose()


def test_upgrade_from_0001_keeps_the_log_and_downgrade_drops_only_the_new_tables(tmp_path):
    eng = create_engine(f"sqlite:///{tmp_path / 'm.db'}")
    upgrade(eng, "0001")
    with eng.begin() as conn:
        conn.execute(t.commands.insert().values(time=1.0, verb="ack", args={}, actor="ana",
                                                status="done"))
    upgrade(eng)
    assert NOISE_TABLES <= set(inspect(eng).get_table_names())
    command.downgrade(alembic_config(eng), "0001")
    names = set(inspect(eng).get_table_names())
    assert not (NOISE_TABLES & names) and "commands" in names
    upgrade(eng)
    with eng.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), t.metadata) == []
        assert conn.execute(t.commands.select()).first().actor == "ana"
    eng.dispose()


# --- silences ----------------------------------------------------------------------------------


def test_silence_roundtrip_with_every_matcher_kind(ns):
    s = ns.add_silence(["check=fe-vacuum", "group=~vac|cryo", "severity!=minor", "area!~x.*"],
                       start=T0, end=T0 + 3600, author=" ana ", reason=" gauge ", now=T0,
                       remind_before=600)
    assert s.id == "1" and s.author == "ana" and s.reason == "gauge"
    back = ns.silence("1")
    assert back == s
    assert [str(m) for m in back.matchers] == ["check=fe-vacuum", "group=~vac|cryo",
                                                "severity!=minor", "area!~x.*"]
    assert back.matchers[1]._regex is not None  # compiled again on the way back
    assert back.remind_before == 600 and back.expired_by is None
    assert ns.silence(2) is None and ns.silence("abc") is None and ns.silence("#1") == s


def test_an_invalid_silence_is_refused_and_nothing_is_stored(ns):
    with pytest.raises(SilenceError, match="reason"):
        ns.add_silence(["check=x"], start=T0, end=T0 + 60, author="ana", reason=" ", now=T0)
    with pytest.raises(SilenceError, match="end after it starts"):
        ns.add_silence(["check=x"], start=T0, end=T0, author="ana", reason="r", now=T0)
    with pytest.raises(SilenceError, match="every alert"):
        ns.add_silence(["group=~.*"], start=T0, end=T0 + 60, author="ana", reason="r", now=T0)
    assert ns.silences() == []


def test_listing_since_and_active(ns):
    a = ns.add_silence(["check=a"], start=T0, end=T0 + 100, author="ana", reason="r", now=T0)
    b = ns.add_silence(["check=b"], start=T0 + 50, end=T0 + 200, author="ben", reason="r",
                       now=T0)
    c = ns.add_silence(["check=c"], start=T0 - 500, end=T0 - 10, author="cy", reason="r",
                       now=T0)
    assert ns.silences() == [c, a, b]
    assert ns.silences(since=T0) == [a, b]  # in force or starting later
    assert ns.silences(since=T0 - 60) == [c, a, b]  # ... and ended in the last minute
    assert ns.active_silences(T0) == [a]
    assert ns.active_silences(T0 + 60) == [a, b]
    assert ns.active_silences(T0 + 100) == [b]  # the end is exclusive


def test_expire_ends_it_now_once_like_the_muter(ns):
    s = ns.add_silence(["check=a"], start=T0, end=T0 + 100, author="ana", reason="r", now=T0)
    ended = ns.expire_silence(s.id, "ben", T0 + 30)
    muter = SilenceMuter([s])
    assert ended == muter.expire(s.id, T0 + 30, "ben")
    assert (ended.end, ended.expired_by) == (T0 + 30, "ben")
    assert ns.expire_silence(s.id, "cy", T0 + 40) == ended  # already ended: unchanged
    later = ns.add_silence(["check=a"], start=T0 + 500, end=T0 + 600, author="ana",
                           reason="r", now=T0)
    assert ns.expire_silence(later.id, "ben", T0 + 40).end == T0 + 500  # never before its start
    with pytest.raises(KeyError):
        ns.expire_silence("99", "ben", T0)
    with pytest.raises(KeyError):
        ns.expire_silence("x", "ben", T0)


def test_the_engine_poll_feeds_the_silence_muter(ns):
    ns.add_silence(["group=vacuum"], start=T0, end=T0 + 3600, author="ana", reason="gauge",
                   now=T0)
    muter = SilenceMuter(ns.silences(since=T0 - 86400), tz="Europe/London")
    detail = muter.mutes(Alert("fe-vacuum", "vacuum"), T0 + 10)
    assert detail == "silenced by ana until 09:00 GMT: gauge"
    assert muter.mutes(Alert("dcm-temp", "optics"), T0 + 10) is None


def test_ids_are_never_reused_after_a_purge(ns):
    for i in range(3):
        ns.add_silence(["check=a"], start=T0, end=T0 + 10 + i, author="a", reason="r", now=T0)
    assert ns.purge(before=T0 + 100)["silences"] == 3
    s = ns.add_silence(["check=a"], start=T0, end=T0 + 500, author="a", reason="r", now=T0)
    assert s.id == "4"


# --- mode overrides and the change log ---------------------------------------------------------


def test_override_set_active_replace_clear(ns):
    assert ns.active_override(T0) is None
    ov = ns.set_override("maintenance", author="ana", reason="vacuum work", until=T0 + 3600,
                         now=T0)
    assert ov == Override("maintenance", "ana", "vacuum work", T0, T0 + 3600)
    assert ns.active_override(T0 + 10) == ov
    assert ns.active_override(T0 + 3600) is None  # ran out by itself
    new = ns.set_override("shutdown", author="ben", reason="beam off", until=T0 + 7200,
                          now=T0 + 100)
    assert ns.active_override(T0 + 200) == new
    first, *_ = ns.overrides()[1:]
    assert (first.cleared_at, first.cleared_by, first.end) == (T0 + 100, "ben", T0 + 100)
    assert ns.clear_override("cy", T0 + 300) == new
    assert ns.active_override(T0 + 301) is None
    assert ns.clear_override("cy", T0 + 302) is None  # nothing to clear
    [last, _] = ns.overrides()
    assert (last.cleared_by, last.end, last.active(T0 + 250), last.active(T0 + 300)) == (
        "cy", T0 + 300, True, False)
    assert len(ns.overrides(limit=1)) == 1


def test_override_validation(ns):
    with pytest.raises(ValueError, match="author and a reason"):
        ns.set_override("user", author="ana", reason="", until=T0 + 1, now=T0)
    with pytest.raises(ValueError, match="future"):
        ns.set_override("user", author="ana", reason="r", until=T0, now=T0)


def test_mode_changes_from_the_tracker_are_logged_in_order(ns):
    tracker = ModeTracker(["user", "unattended", "maintenance"], "user", now=T0)
    records = tracker.on_pv("unattended", T0 + 1)
    records += tracker.on_pv("nonsense", T0 + 2)  # a ModeProblem: not a change
    records += tracker.set_override("maintenance", author="ana", reason="work", now=T0 + 3,
                                    until=T0 + 10)
    records += tracker.tick(T0 + 11)  # expiry
    assert any(isinstance(r, ModeProblem) for r in records)
    assert ns.log_mode_changes(records) == 3
    assert ns.log_mode_changes([]) == 0
    logged = ns.mode_changes()
    assert logged == [r for r in records if isinstance(r, ModeChange)]
    assert [c.source for c in logged] == [ModeSource.PV, ModeSource.OVERRIDE, ModeSource.EXPIRY]
    assert ns.mode_changes(since=T0 + 3) == logged[1:]
    assert ns.mode_changes(limit=2) == logged[1:]  # the most recent two, oldest first
    assert ns.last_mode_change() == logged[-1]


def test_last_mode_change_skips_the_start_of_an_override_that_has_ended(ns):
    ns.log_mode_changes([
        ModeChange(T0, "user", "unattended", ModeSource.PV, None, "mode PV reads 'unattended'"),
        ModeChange(T0 + 10, "unattended", "maintenance", ModeSource.OVERRIDE, "ana", "work"),
    ])
    assert ns.last_mode_change().new == "maintenance"
    assert ns.last_mode_change(settled_after=T0 + 20).new == "unattended"
    ns.log_mode_changes([ModeChange(T0 + 25, "maintenance", "user", ModeSource.OVERRIDE, "ben",
                                    "override cleared")])
    assert ns.last_mode_change(settled_after=T0 + 20).new == "user"  # the clear counts


def test_the_engine_poll_feeds_the_mode_tracker(ns):
    tracker = ModeTracker(["user", "maintenance"], "user", now=T0)
    ns.set_override("maintenance", author="ana", reason="work", until=T0 + 100, now=T0)
    ov = ns.active_override(T0 + 1)
    records = tracker.set_override(ov.mode, author=ov.author, reason=ov.reason, now=T0 + 1,
                                   until=ov.until)
    ns.log_mode_changes(records)
    assert tracker.mode(T0 + 2) == "maintenance"
    assert str(ns.last_mode_change()) == "mode user -> maintenance (override by ana): work"


# --- incidents --------------------------------------------------------------------------------


def incident(iid="i1", **kw):
    base = dict(id=iid, kind=IncidentKind.CHECK, root="fe-vacuum", opened=T0,
                severity=Severity.MAJOR, consequences=("fe-shutter", "dcm-flow"),
                failing=("fe-shutter",))
    return Incident(**(base | kw))


def test_incident_snapshots_insert_update_and_read_back(ns):
    ioc = incident("i2", kind=IncidentKind.IOC, root="ioc:10.0.0.5:5064", server="10.0.0.5:5064",
                   disconnected=("a", "b"), severity=Severity.INVALID, promoted_from="i0")
    assert ns.save_incidents([incident(), ioc], now=T0) == 2
    assert ns.incident("i1") == incident() and ns.incident("i2") == ioc
    assert ns.incident("nope") is None
    # the same id twice in one batch: the last snapshot wins (one upsert statement)
    resolved = incident(resolved=T0 + 60, failing=())
    assert ns.save_incidents([incident(severity=Severity.MINOR), resolved], now=T0 + 60) == 1
    assert ns.incident("i1") == resolved
    assert ns.open_incidents() == [ioc]
    assert [i.id for i in ns.incidents(since=T0 + 30)] == ["i1", "i2"]
    assert [i.id for i in ns.incidents(since=T0 + 61)] == ["i2"]
    assert ns.incidents(since=T0, until=T0 - 1) == []
    ns.save_incident(incident("i3", opened=T0 + 5), now=T0 + 5)
    assert [i.id for i in ns.open_incidents()] == ["i2", "i3"]


def test_open_incidents_restore_the_tracker_without_a_new_page(ns):
    counter = itertools.count(1)
    graph = DependencyGraph({"fe-shutter": ["fe-vacuum"]}, settle=5)
    first = IncidentTracker(graph, id_factory=lambda root, now: f"i{next(counter)}")
    events = first.update("fe-vacuum", Severity.MAJOR, T0)
    events += first.tick(T0 + 10)
    ns.save_incidents([e.incident for e in events], now=T0 + 10)
    [saved] = ns.open_incidents()
    assert saved.root == "fe-vacuum"
    again = IncidentTracker(graph, id_factory=lambda root, now: "new")
    out = again.restore(ns.open_incidents(), {"fe-vacuum": FailingCheck(Severity.MAJOR, T0)},
                        T0 + 20)
    assert out == [] and again.get(saved.id) == saved


def test_purge_keeps_what_is_still_in_force(ns):
    ns.add_silence(["check=a"], start=T0, end=T0 + 10, author="a", reason="r", now=T0)
    keep = ns.add_silence(["check=a"], start=T0, end=T0 + 1000, author="a", reason="r", now=T0)
    ns.set_override("user", author="a", reason="r", until=T0 + 10, now=T0)
    ns.set_override("user", author="a", reason="r", until=T0 + 1000, now=T0 + 5)  # replaces
    ns.log_mode_changes([ModeChange(T0, "a", "b", ModeSource.PV),
                         ModeChange(T0 + 200, "b", "a", ModeSource.PV)])
    ns.save_incidents([incident("old", resolved=T0 + 10), incident("open")], now=T0)
    assert ns.purge(before=T0 + 100) == {"silences": 1, "mode_overrides": 1,
                                         "mode_changes": 1, "incidents": 1}
    assert ns.silences() == [keep]
    assert ns.active_override(T0 + 100).until == T0 + 1000
    assert [i.id for i in ns.open_incidents()] == ["open"]


# --- the service layer (api/noise.py) --------------------------------------------------------


def test_parse_until_reads_clock_times_in_the_beamline_timezone():
    tz = "Europe/London"
    now = datetime(2026, 7, 1, 9, 30, tzinfo=ZoneInfo(tz)).timestamp()  # BST
    assert api.parse_until("14:00", tz, now) == datetime(2026, 7, 1, 14, 0,
                                                          tzinfo=ZoneInfo(tz)).timestamp()
    assert api.parse_until("08:00", tz, now) == datetime(2026, 7, 2, 8, 0,
                                                          tzinfo=ZoneInfo(tz)).timestamp()
    assert api.parse_until("2026-07-03T06:00", tz, now) == datetime(
        2026, 7, 3, 6, 0, tzinfo=ZoneInfo(tz)).timestamp()
    with pytest.raises(ValueError, match="is a duration, not a time: say for 2h"):
        api.parse_until("2h", tz, now)
    with pytest.raises(ValueError, match="not a time like 14:00"):
        api.parse_until("teatime", tz, now)
    with pytest.raises(ValueError, match="not a time of day"):
        api.parse_until("25:00", tz, now)


def test_service_silence_validates_and_stores(config, store):
    s = api.silence(config, store, ["fe-vacuum"], duration="2h", author="ana",
                    reason="replacing gauge", now=T0)
    assert [str(m) for m in s.matchers] == ["check=fe-vacuum"] and s.end == T0 + 7200
    s2 = api.silence(config, store, ["group=optics", "severity=minor"], until=T0 + 60,
                     author="ben", reason="bake-out", now=T0)
    views = api.silences(config, store, T0 + 1)
    assert [(v.silence.id, v.state, v.covers) for v in views] == [
        ("1", "active", ("fe-vacuum",)), ("2", "active", ("dcm-temp", "dcm-flow"))]
    assert views[1].to_json("UTC")["end_text"] == "2027-01-15T08:01:00+00:00"
    assert [v.silence.id for v in api.silences(config, store, T0 + 100)] == ["1"]
    every = api.silences(config, store, T0 + 100, include_expired=True)
    assert [v.state for v in every] == ["active", "ended"] and every[1].silence == s2


@pytest.mark.parametrize(("matchers", "kw", "message"), [
    ([], {}, "say what to silence"),
    (["fe-vacum"], {}, "'fe-vacum' is not a configured check (did you mean fe-vacuum?)"),
    (["group=vacum"], {}, "no check has group 'vacum' (did you mean vacuum?); group values: "
                          "beamwatch, frontend, optics, vacuum"),
    (["colour=red"], {}, "no check has a label 'colour'; labels: area, check, group, mode, "
                         "severity"),
    (["severity=ok"], {}, "severity values: invalid, major, minor"),
    (["mode=beam"], {}, "no check has mode 'beam'"),
    (["group=~nothing.*"], {}, "matches none of the 11 configured checks: fe-vacuum, "
                               "fe-shutter, dcm-temp, dcm-flow"),
    (["check=~.*"], {}, "would silence every alarm"),
    (["group=~(oops"], {}, "bad regex"),
    (["fe-vacuum"], {"reason": " "}, "a silence needs a reason"),
    (["fe-vacuum"], {"author": ""}, "a silence needs an author"),
    (["fe-vacuum"], {"duration": None}, "say how long (for 2h) or until when (until 14:00)"),
    (["fe-vacuum"], {"until": "14:00"}, "not both"),
    (["fe-vacuum"], {"duration": "2 parsecs"}, "is not a duration"),
    (["fe-vacuum"], {"duration": "0s"}, "more than 0"),
    (["fe-vacuum"], {"duration": None, "until": T0 - 1}, "is in the past"),
])
def test_service_silence_errors(config, store, matchers, kw, message):
    args = {"duration": "1h", "author": "ana", "reason": "r", "now": T0} | kw
    with pytest.raises(api.ServiceError) as e:
        api.silence(config, store, matchers, **args)
    assert message in str(e.value)
    assert "\n" not in str(e.value)
    assert NoiseStore(store).silences() == []


def test_service_silence_on_labels_mode_and_severity(config, store):
    s = api.silence(config, store, ["area=frontend"], duration="1h", author="a", reason="r",
                    now=T0)
    assert api.view(config, s, T0).covers == ("fe-vacuum",)
    s = api.silence(config, store, ["mode=shutdown", "group!=optics"], duration="1h",
                    author="a", reason="r", now=T0)
    covers = api.view(config, s, T0).covers  # beamwatch.* are in every mode, not optics
    assert [c for c in covers if not c.startswith("beamwatch.")] == ["fe-vacuum", "fe-shutter"]


def test_bare_check_ids_mean_any_of_them(config, store):
    s = api.silence(config, store, ["fe-vacuum", "dcm-temp", "fe-vacuum"], duration="1h",
                    author="a", reason="r", now=T0)
    assert [str(m) for m in s.matchers] == ["check=~fe-vacuum|dcm-temp"]
    assert api.view(config, s, T0).covers == ("fe-vacuum", "dcm-temp")
    s = api.silence(config, store, ["dcm-temp", "severity=major"], duration="1h", author="a",
                    reason="r", now=T0)
    assert [str(m) for m in s.matchers] == ["check=dcm-temp", "severity=major"]


def test_bare_check_ids_are_escaped_in_the_regex():
    from beamwatch.config.schema import Config

    cfg = Config.model_validate({"beamline": "X", "checks": [
        {"id": "a.b", "pv": "A"}, {"id": "axb", "pv": "B"}, {"id": "c", "pv": "C"}]})
    ms = api.parse_matchers(cfg, ["a.b", "c"])
    assert api.covered_checks(cfg, ms) == ["a.b", "c"]


def test_service_unsilence(config, store):
    s = api.silence(config, store, ["fe-vacuum"], duration="1h", author="ana", reason="r",
                    now=T0)
    ended = api.unsilence(store, s.id, "ben", T0 + 10)
    assert (ended.end, ended.expired_by) == (T0 + 10, "ben")
    assert api.silences(config, store, T0 + 11) == []
    with pytest.raises(api.ServiceError, match="already ended early by ben at 2027-01-15 08:00"):
        api.unsilence(store, s.id, "ben", T0 + 20, tz="Europe/London")
    with pytest.raises(api.ServiceError, match="no silence 7"):
        api.unsilence(store, "7", "ben", T0)
    with pytest.raises(api.ServiceError, match="'x' is not a silence id"):
        api.unsilence(store, "x", "ben", T0)
    with pytest.raises(api.ServiceError, match="who ends"):
        api.unsilence(store, s.id, " ", T0)


def test_service_mode_set_status_clear(config, store):
    info = api.mode_status(config, store, T0)
    assert (info.mode, info.source, info.since, info.override) == ("user", "default", None,
                                                                    None)
    assert not info.engine_running and info.modes[0] == "user"
    ov = api.set_mode(config, store, "maintenance", for_="8h", author="ana",
                      reason="vacuum work", now=T0)
    assert ov == Override("maintenance", "ana", "vacuum work", T0, T0 + 8 * 3600)
    info = api.mode_status(config, store, T0 + 60)
    assert (info.mode, info.source, info.override) == ("maintenance", "override", ov)
    assert info.to_json("UTC")["override"]["until_text"] == "2027-01-15T16:00:00+00:00"
    assert api.clear_mode(store, "ben", T0 + 120) == ov
    assert api.clear_mode(store, "ben", T0 + 130) is None
    assert api.mode_status(config, store, T0 + 140).mode == "user"


def test_service_mode_status_follows_the_engine_log(config, store):
    ns = NoiseStore(store)
    ns.log_mode_changes([ModeChange(T0, "user", "unattended", ModeSource.PV, None,
                                    "mode PV reads '2'")])
    info = api.mode_status(config, store, T0 + 5)
    assert (info.mode, info.source, info.since) == ("unattended", "pv", T0)
    api.set_mode(config, store, "maintenance", until=T0 + 100, author="ana", reason="w",
                 now=T0 + 10)
    ns.log_mode_changes([ModeChange(T0 + 11, "unattended", "maintenance", ModeSource.OVERRIDE,
                                    "ana", "w")])
    assert api.mode_status(config, store, T0 + 50).mode == "maintenance"
    # the override ran out and the engine has not logged it yet: the mode from before
    info = api.mode_status(config, store, T0 + 100)
    assert (info.mode, info.source) == ("unattended", "pv")
    ns.log_mode_changes([ModeChange(T0 + 100, "maintenance", "unattended", ModeSource.EXPIRY,
                                    "ana", "override 'maintenance' (w) expired; mode from pv")])
    info = api.mode_status(config, store, T0 + 101)
    assert (info.mode, info.source, info.since) == ("unattended", "expiry", T0 + 100)
    assert [c.new for c in api.mode_changes(store)] == ["unattended", "maintenance",
                                                       "unattended"]


@pytest.mark.parametrize(("name", "kw", "message"), [
    ("maintenence", {}, "unknown mode 'maintenence' (did you mean maintenance?); modes: "
                        "user, unattended, maintenance, shutdown"),
    ("shutdown", {"reason": None}, "a mode override needs a reason"),
    ("shutdown", {"author": " "}, "a mode override needs an author"),
    ("shutdown", {"for_": None}, "nothing here lasts for ever"),
    ("shutdown", {"for_": None, "until": "3h"}, "'3h' is a duration, not a time"),
])
def test_service_set_mode_errors(config, store, name, kw, message):
    args = {"for_": "8h", "author": "ana", "reason": "r", "now": T0} | kw
    with pytest.raises(api.ServiceError) as e:
        api.set_mode(config, store, name, **args)
    assert message in str(e.value)
    assert NoiseStore(store).active_override(T0) is None


def test_covered_checks_for_matchers():
    from beamwatch.config.schema import Config

    cfg = Config.model_validate({
        "beamline": "X", "checks": [
            {"id": "a", "pv": "A", "group": "g", "labels": {"check": "b"}},
            {"id": "b", "pv": "B"}]})
    # a label cannot pretend to be another check: built-ins win
    assert api.covered_checks(cfg, [Matcher("check", "b")]) == ["b"]
    assert api.covered_checks(cfg, [Matcher("severity", "invalid")]) == ["a", "b"]
    assert api.covered_checks(cfg, [Matcher("check", "a"), Matcher("check", "b")]) == []
