"""Dependency graph: root causes, settle window, diamonds, redundancy (all_of), the muter."""

from types import SimpleNamespace

import pytest

from beamwatch.engine.deps import DependencyError, DependencyGraph, DependencyMuter
from beamwatch.engine.mute import Alert

# The front end of an MX beamline, upstream at the top:
#
#   ring-current
#        |
#   fe-vacuum          cryo-a   cryo-b     (dcm-cooling needs ONE of cryo-a, cryo-b)
#     /      \            \     /
#  fe-shutter  fe-valve    dcm-cooling
#     \      /                |
#    beam-on-sample       dcm-temp
BEAMLINE = {
    "fe-vacuum": ["ring-current"],
    "fe-shutter": ["fe-vacuum"],
    "fe-valve": ["fe-vacuum"],
    "beam-on-sample": ["fe-shutter", "fe-valve"],
    "dcm-cooling": [["cryo-a", "cryo-b"]],
    "dcm-temp": ["dcm-cooling"],
}


@pytest.fixture
def g():
    return DependencyGraph(BEAMLINE, settle=10)


CASES = [
    # (what, check, failing {id: first_failed}, now, expected roots)
    ("nothing failing upstream", "fe-shutter", {"fe-shutter": 0}, 1, []),
    ("direct parent", "fe-shutter", {"fe-vacuum": 0, "fe-shutter": 1}, 2, ["fe-vacuum"]),
    ("most upstream only", "fe-shutter",
     {"ring-current": 0, "fe-vacuum": 1, "fe-shutter": 2}, 3, ["ring-current"]),
    ("transitive through an OK check", "beam-on-sample",
     {"fe-vacuum": 0, "beam-on-sample": 1}, 2, ["fe-vacuum"]),
    ("diamond gives the root once", "beam-on-sample",
     {"fe-vacuum": 0, "fe-shutter": 1, "fe-valve": 1, "beam-on-sample": 2}, 3, ["fe-vacuum"]),
    ("two parents failing on their own", "beam-on-sample",
     {"fe-shutter": 0, "fe-valve": 1, "beam-on-sample": 2}, 3, ["fe-shutter", "fe-valve"]),
    ("consequence first, root within settle", "fe-shutter",
     {"fe-shutter": 100, "fe-vacuum": 109}, 110, ["fe-vacuum"]),
    ("consequence first, root exactly at settle", "fe-shutter",
     {"fe-shutter": 100, "fe-vacuum": 110}, 111, ["fe-vacuum"]),
    ("root too late: independent failure", "fe-shutter",
     {"fe-shutter": 100, "fe-vacuum": 111}, 112, []),
    ("asked before it fails: as if now", "fe-shutter", {"fe-vacuum": 0}, 5, ["fe-vacuum"]),
    ("redundancy: one of two down is not a cause", "dcm-cooling",
     {"cryo-a": 0, "dcm-cooling": 1}, 2, []),
    ("redundancy: both down", "dcm-cooling",
     {"cryo-a": 0, "cryo-b": 1, "dcm-cooling": 2}, 3, ["cryo-a", "cryo-b"]),
    ("redundancy, transitively", "dcm-temp",
     {"cryo-a": 0, "cryo-b": 1, "dcm-temp": 2}, 3, ["cryo-a", "cryo-b"]),
    ("redundancy: the group fails when its LAST member fails", "dcm-cooling",
     {"cryo-a": 0, "dcm-cooling": 100, "cryo-b": 200}, 201, []),
    ("an intermediate failure long before its parent is its own root", "beam-on-sample",
     {"fe-shutter": 0, "fe-vacuum": 500, "beam-on-sample": 5}, 501, ["fe-shutter"]),
]


@pytest.mark.parametrize("what,check,failing,now,expected", CASES, ids=[c[0] for c in CASES])
def test_root_causes(g, what, check, failing, now, expected):
    assert g.root_causes(check, failing, now) == expected


def test_forty_dependents_all_point_at_the_vacuum():
    deps = {f"dep-{i}": ["fe-vacuum"] for i in range(40)}
    g = DependencyGraph(deps)
    failing = {"fe-vacuum": 0.0} | {f"dep-{i}": 0.1 * i for i in range(40)}
    assert all(g.root_causes(f"dep-{i}", failing, 5) == ["fe-vacuum"] for i in range(40))
    assert g.consequences("fe-vacuum", failing, 5) == sorted(deps)
    assert g.root_causes("fe-vacuum", failing, 5) == []


def test_structure_queries(g):
    assert g.upstream("beam-on-sample") == {"fe-shutter", "fe-valve", "fe-vacuum", "ring-current"}
    assert g.downstream("fe-vacuum") == {"fe-shutter", "fe-valve", "beam-on-sample"}
    assert g.has_upstream("fe-shutter") and not g.has_upstream("ring-current")
    assert g.rank("ring-current") < g.rank("fe-vacuum") < g.rank("beam-on-sample")
    assert g.settle_deadline("fe-shutter", 100) == 110
    assert g.settle_deadline("ring-current", 100) == 100
    assert g.graph.edges["dcm-cooling", "cryo-a"]["all_of"] == frozenset({"cryo-a", "cryo-b"})


def test_group_references_expand():
    g = DependencyGraph(
        {"sample-cam": ["group:vacuum"], "dcm-temp": [["group:cryo"]]},
        groups={"gauge-1": "vacuum", "gauge-2": "vacuum", "cc-a": "cryo", "cc-b": "cryo",
                "sample-cam": "optics", "dcm-temp": "optics"},
    )
    assert g.requirements["sample-cam"] == [frozenset({"gauge-1"}), frozenset({"gauge-2"})]
    assert g.requirements["dcm-temp"] == [frozenset({"cc-a", "cc-b"})]
    assert g.root_causes("dcm-temp", {"cc-a": 0}, 1) == []
    assert g.root_causes("dcm-temp", {"cc-a": 0, "cc-b": 0}, 1) == ["cc-a", "cc-b"]


def test_from_checks_accepts_all_of_objects():
    checks = [
        SimpleNamespace(id="cc-a", group="cryo", depends_on=[]),
        SimpleNamespace(id="cc-b", group="cryo", depends_on=[]),
        SimpleNamespace(id="dcm", group="optics",
                        depends_on=[SimpleNamespace(all_of=["cc-a", "cc-b"])]),
    ]
    g = DependencyGraph.from_checks(checks)
    assert g.requirements["dcm"] == [frozenset({"cc-a", "cc-b"})]


@pytest.mark.parametrize("deps,groups,message", [
    ({"a": ["b"], "b": ["a"]}, None, "dependency cycle: "),
    ({"a": ["a"]}, None, "cannot depend on itself"),
    ({"a": ["group:nope"]}, {"a": "x"}, "group:nope, which has no other checks"),
    ({"a": ["typo"]}, {"a": "x"}, "unknown check id 'typo'"),
    ({"a": [[]]}, None, "an all_of with no checks"),
])
def test_bad_graphs(deps, groups, message):
    with pytest.raises(DependencyError, match=message):
        DependencyGraph(deps, groups=groups)


def test_dependency_muter(g):
    failing = {"fe-vacuum": 0.0}
    muter = DependencyMuter(g, failing, hold=False)
    assert muter.mutes(Alert("fe-shutter"), 1) == "root cause: fe-vacuum"
    assert muter.mutes(Alert("fe-vacuum"), 1) is None
    failing["ring-current"] = 0.5  # held by reference: the engine's live dict
    assert muter.mutes(Alert("fe-shutter"), 1) == "root cause: ring-current"
    two = DependencyMuter(g, {"fe-shutter": 0, "fe-valve": 0}, hold=False)
    assert two.mutes(Alert("beam-on-sample"), 1) == "root causes: fe-shutter, fe-valve"


def test_dependency_muter_asks_the_incident_tracker_first(g):
    muter = DependencyMuter(g, {}, hold=False,
                            attributed=lambda c: "IOC vac-ioc:5064 unreachable (20 PVs)"
                            if c == "gauge-3" else None)
    assert muter.mutes(Alert("gauge-3"), 1) == "root cause: IOC vac-ioc:5064 unreachable (20 PVs)"
    assert muter.mutes(Alert("fe-shutter"), 1) is None


def test_dependency_muter_holds_a_new_consequence_for_settle_seconds(g):
    failing = {"fe-shutter": 100.0}  # seen before its root
    muter = DependencyMuter(g, failing)
    assert muter.mutes(Alert("fe-shutter"), 100) == "held 10s for a root cause to show up"
    assert muter.mutes(Alert("ring-current"), 100) is None  # nothing upstream: no hold
    failing["fe-vacuum"] = 105.0
    assert muter.mutes(Alert("fe-shutter"), 106) == "root cause: fe-vacuum"
    del failing["fe-vacuum"]
    assert muter.mutes(Alert("fe-shutter"), 110) is None  # hold over, no root: notify
    tracked = DependencyMuter(g, failing, held=lambda c: c == "gauge-1")
    assert tracked.mutes(Alert("gauge-1"), 200) == "held 10s for a root cause to show up"
    assert tracked.mutes(Alert("fe-shutter"), 100) is None
