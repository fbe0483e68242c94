"""A page goes somewhere, with the error, never nowhere (fail open, not shut)."""

from beamwatch.config import parse_config
from beamwatch.model import AlarmState, Severity, Transition
from beamwatch.paging.decide import Decider
from beamwatch.routing.router import Router

CONFIG = """
beamline: I04
checks:
  - {{id: fe-vacuum, pv: FE04I-VA-IMG-01:P, group: vacuum, above: {{major: 1e-6}}}}
  - {{id: dcm-temp, pv: BL04I-OP-DCM-01:TEMP1, group: optics, above: {{major: 140}}}}
people:
  ana: {{email: ana@example.org}}
channels:
  ops: {{kind: webhook, webhook_url: "http://127.0.0.1:9/hook"}}
  mail: {{kind: email, smtp_host: 127.0.0.1, sender: bw@example.org, people: true}}
routes:
  - match: {{group: vacuum}}
    to: [person:ana]
{fallback}
"""


def decider(fallback: str = "fallback: [channel:ops]") -> Decider:
    config = parse_config(CONFIG.format(fallback=fallback))
    states = {}
    d = Decider(config, Router(config), state_of=states.get)
    d._states = states
    return d


def fail(d: Decider, check_id: str, now: float) -> list[dict]:
    d._states[check_id] = AlarmState(check_id, Severity.MAJOR, Severity.MAJOR, since=now)
    tr = Transition(check_id, now, Severity.OK, Severity.MAJOR, Severity.MAJOR, False, 5.0,
                    "too high", "threshold")
    return d.decide([tr], now).rows


def broken_router(monkeypatch):
    def route(*_a, **_k):
        raise RuntimeError("a bug in routing")
    monkeypatch.setattr(Router, "route", route)


def test_routing_that_raises_pages_the_fallback_with_the_error(monkeypatch):
    d = decider()
    broken_router(monkeypatch)
    rows = fail(d, "fe-vacuum", 100.0)
    assert [(r["destination"], r["kind"]) for r in rows] == [("channel:ops", "alarm")]
    assert "routing failed (RuntimeError: a bug in routing)" in rows[0]["message"]["text"]
    assert d.paged  # told once: the next tick does not page again
    assert d.tick(101.0).rows == []


def test_a_page_no_route_reaches_goes_to_the_fallback():
    d = decider()
    rows = fail(d, "dcm-temp", 100.0)
    assert [r["destination"] for r in rows] == ["channel:ops"]
    assert "no route reached anyone" in rows[0]["message"]["text"]


def test_routed_pages_do_not_go_to_the_fallback():
    d = decider()
    rows = fail(d, "fe-vacuum", 100.0)
    assert {r["destination"] for r in rows} == {"person:ana/email"}


def test_without_a_fallback_a_failed_routing_is_offered_again_until_it_works(monkeypatch):
    d = decider(fallback="")
    with monkeypatch.context() as m:
        broken_router(m)
        assert fail(d, "fe-vacuum", 100.0) == []
        assert not d.paged and d.tick(101.0).rows == []
    rows = d.tick(102.0).rows  # routing works again: the page was not lost
    assert {r["destination"] for r in rows} == {"person:ana/email"}


def test_fallback_people_are_reached_on_their_channels():
    d = decider("fallback: [person:ana]")
    rows = fail(d, "dcm-temp", 100.0)
    assert [r["destination"] for r in rows] == ["person:ana/email"]
