"""Noise control on a real PostgreSQL: migration 0002 from empty and from 0001, no drift
against tables.py, and NoiseStore's statements (the max() in expire, the incident upsert,
the JSON matchers) as PostgreSQL runs them. A throwaway database per test."""


from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from beamwatch.engine.incidents import Incident, IncidentKind
from beamwatch.engine.modes import ModeChange, ModeSource
from beamwatch.model import Severity
from beamwatch.store import Store
from beamwatch.store import tables as t
from beamwatch.store.migrate import alembic_config, upgrade
from beamwatch.store.noise import NoiseStore

NOISE_TABLES = {"silences", "mode_overrides", "mode_changes", "incidents"}
T0 = 1_800_000_000.0



def no_drift(engine) -> list:
    with engine.connect() as conn:
        return compare_metadata(MigrationContext.configure(conn), t.metadata)


def test_upgrade_from_empty_to_head_has_no_drift(pg_url):
    store = Store(pg_url)  # migrates to head
    assert NOISE_TABLES <= set(inspect(store.engine).get_table_names())
    assert no_drift(store.engine) == []
    store.close()


def test_upgrade_from_0001_downgrade_and_up_again(pg_url):
    store = Store(pg_url, migrate=False)
    upgrade(store.engine, "0001")
    assert not NOISE_TABLES & set(inspect(store.engine).get_table_names())
    upgrade(store.engine)
    assert no_drift(store.engine) == []
    command.downgrade(alembic_config(store.engine), "0001")
    assert not NOISE_TABLES & set(inspect(store.engine).get_table_names())
    upgrade(store.engine)
    assert no_drift(store.engine) == []
    store.close()


def test_noise_store_roundtrip(pg_url):
    store = Store(pg_url)
    ns = NoiseStore(store)
    s = ns.add_silence(["check=fe-vacuum", "group=~vac|cryo"], start=T0, end=T0 + 3600,
                       author="ana", reason="gauge", now=T0)
    later = ns.add_silence(["check=dcm-temp"], start=T0 + 500, end=T0 + 900, author="ben",
                           reason="later", now=T0)
    assert ns.silence(s.id) == s and ns.silences(since=T0) == [s, later]
    assert ns.active_silences(T0 + 10) == [s]
    assert ns.expire_silence(s.id, "ben", T0 + 60).end == T0 + 60
    assert ns.expire_silence(later.id, "ben", T0 + 60).end == T0 + 500  # max(now, start)
    assert ns.silences(since=T0 + 600) == []

    first = ns.set_override("maintenance", author="ana", reason="work", until=T0 + 100, now=T0)
    second = ns.set_override("shutdown", author="ben", reason="off", until=T0 + 200, now=T0 + 1)
    assert ns.active_override(T0 + 2) == second
    assert ns.overrides()[1].cleared_by == "ben" and ns.overrides()[1].override == first
    assert ns.clear_override("cy", T0 + 3) == second and ns.active_override(T0 + 4) is None

    changes = [ModeChange(T0, "user", "maintenance", ModeSource.OVERRIDE, "ana", "work"),
               ModeChange(T0 + 3, "maintenance", "user", ModeSource.OVERRIDE, "cy",
                          "override cleared")]
    assert ns.log_mode_changes(changes) == 2
    assert ns.mode_changes(since=T0) == changes

    inc = Incident("i1", IncidentKind.IOC, "ioc:h:5064", T0, Severity.MAJOR,
                   consequences=("a", "b"), failing=("a",), server="h:5064",
                   disconnected=("a", "b"))
    assert ns.save_incidents([inc, inc], now=T0) == 1  # one id twice in a batch: one row
    done = Incident("i1", IncidentKind.IOC, "ioc:h:5064", T0, Severity.INVALID,
                    consequences=("a", "b"), resolved=T0 + 50, server="h:5064",
                    disconnected=("a", "b"))
    ns.save_incidents([done], now=T0 + 50)
    assert ns.incident("i1") == done and ns.open_incidents() == []
    assert ns.incidents(since=T0 + 10) == [done]
    assert ns.purge(before=T0 + 10_000) == {"silences": 2, "mode_overrides": 2,
                                            "mode_changes": 2, "incidents": 1}
    store.close()
