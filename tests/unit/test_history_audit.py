"""`beamwatch history` is the beamline log: besides the transitions, every change people
made (here a silence and a mode override from the CLI, a subscription from Slack), with
who, from where and why; --json marks each row's kind."""

from __future__ import annotations

import json
import textwrap

from typer.testing import CliRunner

from beamwatch.api import people
from beamwatch.cli import app
from beamwatch.config import load_config
from beamwatch.store import Store

CONFIG = """\
    beamline: I04
    storage: {{url: "sqlite:///{db}"}}
    modes: {{names: [user, maintenance], default: user}}
    checks:
      - {{id: fe-vacuum, pv: "FE:1", group: vacuum}}
    people:
      ana: {{webhook: "http://127.0.0.1:9/ana"}}
    """


def test_changes_from_every_front_end_are_in_the_log(tmp_path, wide_output):
    path = tmp_path / "i04.yaml"
    path.write_text(textwrap.dedent(CONFIG.format(db=tmp_path / "bw.db")))
    run = CliRunner().invoke
    assert run(app, ["silence", "fe-vacuum", "--for", "2h", "-r", "new gauge", "--as", "ana",
                     "-c", str(path)]).exit_code == 0
    assert run(app, ["mode", "set", "maintenance", "--for", "1h", "-r", "bake-out",
                     "--as", "ben", "-c", str(path)]).exit_code == 0
    cfg = load_config(path)
    store = Store(cfg.storage.url)
    people.subscribe(cfg, store, "ana", "vacuum", "major", actor="ana", via="slack")
    store.close()

    rows = json.loads(run(app, ["history", "--json", "-c", str(path)]).stdout)
    got = [(r["kind"], r["action"], r["actor"], r["via"]) for r in rows]
    assert got == [("audit", "silence", "ana", "cli"), ("audit", "mode set", "ben", "cli"),
                   ("audit", "subscribe", "ana", "slack")]
    assert "new gauge" in rows[0]["detail"] and rows[0]["target"] == "check=fe-vacuum"

    table = run(app, ["history", "-c", str(path)]).stdout
    assert "silence check=fe-vacuum" in table and "by ana (cli)" in table
    assert "subscribe ana" in table and "by ana (slack)" in table


def test_limit_keeps_the_newest_rows_and_a_check_sees_the_silences_naming_it(tmp_path):
    from beamwatch.api import audit, service
    from beamwatch.model import AlarmState, Severity, Transition

    path = tmp_path / "i04.yaml"
    path.write_text(textwrap.dedent(CONFIG.format(db=tmp_path / "bw.db")))
    store = Store(load_config(path).storage.url)
    for i in range(20):
        new = Severity.MAJOR if i % 2 == 0 else Severity.OK
        tr = Transition(check_id="fe-vacuum", time=1000.0 + i, old=Severity.OK, new=new,
                        current=new, acked=False, value=i, message=f"t{i}", reason="")
        store.record([(tr, AlarmState("fe-vacuum", new, new, since=tr.time))])
    audit.record(store, "ana", "cli", "silence", r"check=~fe-vacuum|other\.check",
                 "#1 until 14:00: gauge", now=1010.5)
    audit.record(store, "ana", "cli", "silence", "group=optics", "#2", now=1018.5)

    rows = service.history(store, 0.0, limit=4)
    assert [r.get("message") or r["detail"] for r in rows] == ["t17", "t18", "#2", "t19"]
    mine = service.history(store, 0.0, check_id="fe-vacuum")
    assert [r["detail"] for r in mine if r["kind"] == "audit"] == ["#1 until 14:00: gauge"]
    store.close()
