"""The dependency graph: which failing check explains which other failures.

Edges go from a check to a check it depends on (`depends_on`), so "upstream"
means towards the causes. A check's dependencies are a list of
*requirements*; a requirement is a set of checks that must ALL be failing for
it to fail. A set of one is an ordinary dependency; a larger set is
redundancy ("the beam needs one of the two cryocoolers": `all_of: [cc-a,
cc-b]`). `group:NAME` names every check of a group: as a plain entry each of
them is a dependency, inside `all_of` the whole group is redundant.

Attribution is transitive and timed. A failing check C is explained by a
failing upstream check U when U started failing no later than `settle`
seconds after C (consequences are often seen first: a closed shutter
reports before the vacuum gauge that closed it). The *root causes* are the
failing upstream checks that are not themselves explained by something further
up. An intermediate check that is OK does not break the chain: if the
vacuum fails, the detector downstream of a shutter is its consequence even
when the shutter check has not fired.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import networkx as nx

from ..model import MuteReason
from .mute import Alert

GROUP_PREFIX = "group:"
DEFAULT_SETTLE = 10.0

# One entry of a check's dependency list: a check id, "group:NAME", or a list of
# those meaning all_of (an object with an `all_of` attribute is accepted too).
DependencyEntry = str | Iterable[str] | Any


class DependencyError(ValueError):
    """The dependencies cannot form a graph (unknown id, empty group, cycle)."""


class DependencyGraph:
    """Requirements per check, the networkx DiGraph of them, and attribution.

    `depends_on`: check id → entries (see DependencyEntry). `groups`: check id →
    group for every check; needed to expand `group:NAME`, and when given, an
    id that is not a check is an error. Checks that depend on nothing and that
    nothing depends on may be left out of `depends_on`.
    """

    def __init__(self, depends_on: Mapping[str, Iterable[DependencyEntry]], *,
                 groups: Mapping[str, str] | None = None, settle: float = DEFAULT_SETTLE):
        if settle < 0:
            raise DependencyError("settle must be >= 0")
        self.settle = float(settle)
        self.groups = dict(groups or {})
        members: dict[str, list[str]] = {}
        for cid, g in self.groups.items():
            members.setdefault(g, []).append(cid)
        known = set(depends_on) | set(self.groups)
        self.requirements: dict[str, list[frozenset[str]]] = {}
        self.graph = nx.DiGraph()
        for cid, entries in depends_on.items():
            self.graph.add_node(cid)
            reqs: list[frozenset[str]] = []
            for entry in entries:
                reqs.extend(self._requirements(cid, entry, members, known))
            self.requirements[cid] = _dedupe(reqs)
            for req in self.requirements[cid]:
                for dep in req:
                    self.graph.add_edge(cid, dep, all_of=req if len(req) > 1 else None)
        try:
            cycle = nx.find_cycle(self.graph)
        except nx.NetworkXNoCycle:
            cycle = None
        if cycle:
            raise DependencyError("dependency cycle: " + " -> ".join(
                [u for u, _ in cycle] + [cycle[0][0]]))
        # deps before dependents: the order to settle pending alarms in
        order = list(reversed(list(nx.topological_sort(self.graph))))
        self._rank = {cid: i for i, cid in enumerate(order)}

    @classmethod
    def from_checks(cls, checks: Iterable[Any], settle: float = DEFAULT_SETTLE) -> DependencyGraph:
        """From CheckConfig objects (`id`, `group`, `depends_on`)."""
        checks = list(checks)
        return cls({c.id: list(c.depends_on) for c in checks},
                   groups={c.id: c.group for c in checks}, settle=settle)

    def _requirements(self, cid: str, entry: DependencyEntry, members: Mapping[str, list[str]],
                      known: set[str]) -> list[frozenset[str]]:
        if hasattr(entry, "all_of"):
            entry = entry.all_of
        if isinstance(entry, str):
            return [frozenset([d]) for d in self._expand(cid, entry, members, known)]
        ids = [d for e in entry for d in self._expand(cid, e, members, known)]
        if not ids:
            raise DependencyError(f"{cid}: an all_of with no checks")
        return [frozenset(ids)]

    def _expand(self, cid: str, ref: str, members: Mapping[str, list[str]],
                known: set[str]) -> list[str]:
        if ref.startswith(GROUP_PREFIX):
            group = ref[len(GROUP_PREFIX):]
            ids = [m for m in members.get(group, []) if m != cid]
            if not ids:
                raise DependencyError(f"{cid}: depends on {ref}, which has no other checks")
            return ids
        if ref == cid:
            raise DependencyError(f"{cid}: a check cannot depend on itself")
        if known and ref not in known and self.groups:
            raise DependencyError(f"{cid}: unknown check id '{ref}'")
        return [ref]

    # -- structure -------------------------------------------------------------------------

    def has_upstream(self, check_id: str) -> bool:
        """Could this check's failure be a consequence of another's?"""
        return bool(self.requirements.get(check_id))

    def upstream(self, check_id: str) -> set[str]:
        """Every check this one depends on, transitively."""
        return nx.descendants(self.graph, check_id) if check_id in self.graph else set()

    def downstream(self, check_id: str) -> set[str]:
        """Every check that depends on this one, transitively ("if X fails, these suffer")."""
        return nx.ancestors(self.graph, check_id) if check_id in self.graph else set()

    def rank(self, check_id: str) -> int:
        """Sort key putting dependencies before their dependents."""
        return self._rank.get(check_id, -1)

    def settle_deadline(self, check_id: str, first_failed: float) -> float:
        """Until when a new failure of `check_id` should be held so that its root
        can show up: `settle` later if it has upstream checks, else at once."""
        return first_failed + self.settle if self.has_upstream(check_id) else first_failed

    # -- attribution ----------------------------------------------------------------------

    def root_causes(self, check_id: str, failing: Mapping[str, float], now: float) -> list[str]:
        """The failing upstream checks that explain `check_id`'s failure, most
        upstream only, earliest first.

        `failing`: check id → when it started failing (first non-OK), for every
        check non-OK now. `check_id` itself need not be in it: then it is asked
        as if it failed at `now` ("would a new alarm be a consequence?").
        An empty list: `check_id` is (or would be) a root cause itself.
        """
        t = failing.get(check_id, now)
        found = _Attribution(self, failing).upstream_roots(check_id)
        hits = [(when, r) for r, when in found.items() if when <= t + self.settle and r != check_id]
        return [r for _, r in sorted(hits, key=lambda x: (failing[x[1]], x[1]))]

    def consequences(self, root: str, failing: Mapping[str, float], now: float) -> list[str]:
        """The failing checks whose root causes include `root`."""
        return sorted(c for c in self.downstream(root)
                      if c in failing and root in self.root_causes(c, failing, now))


class _Attribution:
    """One attribution pass over a snapshot of `failing` (memoised per node).

    For each node it computes {root: since}: the roots that explain the node
    being down, and from when each explanation holds (for an all_of, from
    when its last member went down).
    """

    def __init__(self, graph: DependencyGraph, failing: Mapping[str, float]):
        self.g = graph
        self.failing = failing
        self.memo: dict[str, dict[str, float]] = {}

    def upstream_roots(self, node: str) -> dict[str, float]:
        out: dict[str, float] = {}
        for req in self.g.requirements.get(node, ()):
            if len(req) == 1:
                (dep,) = req
                _merge(out, self.roots(dep))
                continue
            per_member = [self.roots(m) for m in sorted(req)]
            if not all(per_member):
                continue  # redundancy holds: one member is still up
            complete = max(min(r.values()) for r in per_member)
            for r in per_member:
                _merge(out, {root: max(t, complete) for root, t in r.items()})
        return out

    def roots(self, node: str) -> dict[str, float]:
        """Why `node` is down: its roots, or {node: t} if it is a root; {} if up."""
        if node in self.memo:
            return self.memo[node]
        up = self.upstream_roots(node)
        t = self.failing.get(node)
        if t is not None:
            up = {r: w for r, w in up.items() if w <= t + self.g.settle}
            up = up or {node: t}
        self.memo[node] = up
        return up


def _merge(into: dict[str, float], more: Mapping[str, float]) -> None:
    for k, v in more.items():
        if k not in into or v < into[k]:
            into[k] = v


def _dedupe(reqs: list[frozenset[str]]) -> list[frozenset[str]]:
    seen: set[frozenset[str]] = set()
    out = []
    for r in reqs:
        if r not in seen:
            seen.add(r)
            out.append(r)
    return out


def describe_roots(roots: list[str]) -> str:
    """'root cause: fe-vacuum' / 'root causes: a, b'."""
    return ("root cause: " if len(roots) == 1 else "root causes: ") + ", ".join(roots)


class DependencyMuter:
    """The DEPENDENCY stage: mutes a check whose failure a failing upstream check
    explains — and, while its root may still show up, holds it.

    `failing` is the engine's live mapping check id → first non-OK time of every
    check non-OK now; it is held by reference, not copied (`IncidentTracker.failing`
    is one). `attributed`, if given (e.g. `IncidentTracker.root_of`), is asked
    first: it knows attributions the graph cannot make, such as "IOC host:port
    unreachable".

    Holding: a new failure of a check that has upstream checks is muted for the
    graph's `settle` seconds ("held 10s for a root cause") so that a consequence
    seen before its root does not page; the engine re-offers it afterwards
    (Decider.review), when it is either attributed or notified. `held`, if given
    (e.g. `IncidentTracker.is_held`, which also holds lost connections that may
    be one dead IOC), replaces the graph's own rule.
    """

    reason = MuteReason.DEPENDENCY

    def __init__(self, graph: DependencyGraph, failing: Mapping[str, float], *,
                 attributed: Callable[[str], str | None] | None = None,
                 held: Callable[[str], bool] | None = None, hold: bool = True):
        self.graph = graph
        self.failing = failing
        self.attributed = attributed
        self.held = held
        self.hold = hold

    def mutes(self, alert: Alert, now: float) -> str | None:
        cid = alert.check_id
        if self.attributed is not None:
            root = self.attributed(cid)
            if root is not None:
                return describe_roots([root])
        roots = self.graph.root_causes(cid, self.failing, now)
        if roots:
            return describe_roots(roots)
        if self.hold and self._held(cid, now):
            return f"held {self.graph.settle:g}s for a root cause to show up"
        return None

    def _held(self, check_id: str, now: float) -> bool:
        if self.held is not None:
            return self.held(check_id)
        return now < self.graph.settle_deadline(check_id, self.failing.get(check_id, now))
