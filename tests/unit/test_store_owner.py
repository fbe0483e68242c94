"""A store belongs to one beamline: the first config that opens it claims it, and
any other beamline's config is refused, naming both (SQLite here; PostgreSQL
schemas in tests/integration/test_facility.py). And what the engine tells a
facility view: who is on call, written when it changes and at least every minute."""

from __future__ import annotations

import asyncio

import pytest
from typer.testing import CliRunner

from beamwatch import cli
from beamwatch.config.loader import parse_config
from beamwatch.facility.snapshot import REFRESH, OnCallSnapshot
from beamwatch.routing.oncall import OnCallResolver
from beamwatch.store import Store
from beamwatch.store.errors import StoreMismatch


def test_a_store_refuses_a_second_beamline(tmp_path):
    url = f"sqlite:///{tmp_path / 'bw.db'}"
    Store(url, beamline="I04").close()
    Store(url, beamline="I04").close()  # its own beamline, again: fine
    with pytest.raises(StoreMismatch) as e:
        Store(url, beamline="I03")
    assert str(e.value).startswith(f"the store {url} belongs to beamline 'I04', not 'I03'")
    assert "\n" not in str(e.value)
    store = Store(url)  # no beamline given (tools, tests): no check, no claim
    assert store.beamline() == "I04"
    store.close()


def test_the_cli_says_so_in_one_line(tmp_path):
    db = tmp_path / "bw.db"
    Store(f"sqlite:///{db}", beamline="I04").close()
    cfg = tmp_path / "bw.yaml"
    cfg.write_text(f'beamline: I03\nstorage: {{url: "sqlite:///{db}"}}\n')
    done = CliRunner().invoke(cli.app, ["status", "-c", str(cfg)])
    assert done.exit_code == 1
    assert done.stderr.splitlines() == [
        f"beamwatch: cannot open the store sqlite:///{db}: the store sqlite:///{db} belongs "
        f"to beamline 'I04', not 'I03' (beamline: in the config): give each beamline its "
        f"own storage.schema or SQLite file"]


def test_a_schema_is_refused_on_sqlite(tmp_path):
    with pytest.raises(ValueError, match="PostgreSQL only"):
        Store(f"sqlite:///{tmp_path / 'bw.db'}", schema="i04")


CONFIG = """
beamline: I04
people:
  ana: {name: Ana Lima, webhook: "http://127.0.0.1:9/ana"}
  ben: {webhook: "http://127.0.0.1:9/ben"}
teams:
  mx: {members: [ana, ben], rota: {every: 1d, start: "2026-01-01T08:00", order: [ana, ben]}}
  none: {members: [ana]}
"""


def test_the_oncall_snapshot_is_written_on_change_and_every_minute(tmp_path):
    config = parse_config(CONFIG)
    store = Store(f"sqlite:///{tmp_path / 'bw.db'}")
    resolver = OnCallResolver(config)
    snapshot = OnCallSnapshot()

    async def write(fn, *args):
        return fn(*args)

    def publish(t: float) -> bool:
        return asyncio.run(snapshot.publish(resolver, t, write, store.save_oncall))

    t0 = 1767254400.0 + 3600  # 2026-01-01T09:00Z: ana's day
    assert publish(t0)
    [mx] = store.oncall_now()  # a team without a rota has nobody to show
    assert (mx["team"], mx["person"], mx["name"], mx["time"]) == ("mx", "ana", "Ana Lima", t0)
    assert not publish(t0 + 15)  # nothing changed, not due
    assert publish(t0 + REFRESH)  # due: a reader sees the answer is current
    handover = 1767254400.0 + 86400  # 2026-01-02T08:00Z
    assert publish(handover - 5)  # due
    assert publish(handover + 5)  # 10 s later, but ben took over: written at once
    [mx] = store.oncall_now()
    assert (mx["person"], mx["name"]) == ("ben", "ben")  # no name: the id
    store.close()
