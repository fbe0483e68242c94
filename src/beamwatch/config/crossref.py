"""Whole-file checks that no single key can make: ids, references, cycles."""

from __future__ import annotations

from collections.abc import Iterator

import networkx as nx

from ..checks.expr import CheckNames, Expression, ExpressionError
from .schema import Config, RouteConfig

Problem = tuple[tuple[str | int, ...], str]


def cross_check(config: Config, invalid_ids: set[str] = frozenset()) -> list[Problem]:
    """`invalid_ids`: ids of checks that failed their own validation; they are
    still known, so that a typo in one check does not cascade into others."""
    problems: list[Problem] = []
    for part in (_cycles, _modes, _people, _slack, _digest, _routes, _fallback, _maintenance):
        problems.extend(part(config))
    problems.extend(_check_refs(config, set(invalid_ids)))
    if not problems:
        problems.extend(_graph(config))
    if not problems:  # channels and templates are checked once the references hold
        from ..notify.registry import registry_problems

        problems.extend(registry_problems(config))
    return problems


def _check_refs(config: Config, also_known: set[str]) -> Iterator[Problem]:
    ids = set(config.check_ids) | also_known
    names = CheckNames(ids)
    groups = {x.group for x in config.checks}
    for i, c in enumerate(config.checks):
        for j, entry in enumerate(c.depends_on):
            for dep in getattr(entry, "all_of", [entry]):
                if dep.startswith("group:"):
                    if dep[len("group:"):] not in groups:
                        yield ("checks", i, "depends_on", j), f"no check has group '{dep[6:]}'"
                elif dep not in ids:
                    yield ("checks", i, "depends_on", j), f"unknown check id '{dep}'"
                elif dep == c.id:
                    yield ("checks", i, "depends_on", j), "a check cannot depend on itself"
        if c.source is not None:
            problem = _source_problem(config, c)
            if problem:
                yield ("checks", i, "source"), problem
        if c.archive:
            yield from _archive_problems(config, i, c)
        if c.when is not None:
            try:
                Expression(c.when, names)
            except ExpressionError as e:
                yield ("checks", i, "when"), str(e)


# the kind of source each input reads from
_SOURCE_KIND = {"pv": "ca", "pva": "pva", "get": "http", "post": "http", "query": "sql"}


def _source_problem(config: Config, check) -> str | None:
    name = check.source
    declared = config.sources.get(name)
    kind = declared.kind if declared is not None else name if name in ("ca", "pva") else None
    if kind is None:
        known = ", ".join(dict.fromkeys(["ca", "pva", *config.sources]))
        return f"unknown source '{name}' (known: {known})"
    wanted = _SOURCE_KIND.get(check.input_key)
    if kind == "archiver":
        return (f"source '{name}' is an archiver: history, not a live input (its past "
                f"for plots: archive: {{source: {name}}})")
    if wanted is not None and kind != wanted:
        return (f"source '{name}' is of kind {kind}; {check.input_key}: reads a source of "
                f"kind {wanted}")
    return None


def _archive_problems(config: Config, i: int, check) -> Iterator[Problem]:
    """`archive:` names an archiver source (when given) and has a PV to ask for."""
    archivers = [n for n, s in config.sources.items() if s.kind == "archiver"]
    ref = check.archive
    if not archivers:
        yield ("checks", i, "archive"), ("no source of kind archiver is declared "
                                         "(sources: {arch: {kind: archiver, url: …}})")
        return
    if ref.source is not None and ref.source not in archivers:
        yield ("checks", i, "archive", "source"), (
            f"'{ref.source}' is not an archiver source (archiver sources: "
            f"{', '.join(archivers)})")
    if ref.pv is None and check.pv is None and check.pva is None:
        yield ("checks", i, "archive"), (f"archive: needs pv: NAME (the archived PV) for a "
                                         f"{check.input_key}: check")


def _graph(config: Config) -> Iterator[Problem]:
    """What the engine's dependency graph itself refuses (e.g. a group depending on
    itself only), so that `check` fails where `run` would."""
    from ..engine.deps import DependencyError, DependencyGraph

    try:
        DependencyGraph.from_checks(config.checks)
    except DependencyError as e:
        yield ("checks",), str(e)


def _cycles(config: Config) -> Iterator[Problem]:
    graph = nx.DiGraph()
    index = {c.id: i for i, c in enumerate(config.checks)}
    members: dict[str, list[str]] = {}
    for c in config.checks:
        members.setdefault(c.group, []).append(c.id)
    for c in config.checks:
        for dep in c.depends_on_ids:
            targets = members.get(dep[6:], []) if dep.startswith("group:") else [dep]
            for target in targets:
                if target in index and target != c.id:
                    graph.add_edge(c.id, target)
    for cycle in nx.simple_cycles(graph):
        first = min(cycle, key=lambda cid: index[cid])
        start = cycle.index(first)
        ordered = cycle[start:] + cycle[:start] + [first]
        yield ("checks", index[first], "depends_on"), (
            "dependency cycle: " + " -> ".join(ordered)
        )


def _modes(config: Config) -> Iterator[Problem]:
    names = config.modes.names
    for i, c in enumerate(config.checks):
        for j, m in enumerate(c.modes or []):
            if m not in names:
                yield ("checks", i, "modes", j), f"unknown mode '{m}' (modes: {', '.join(names)})"
        for m in c.by_mode:
            if m not in names:
                yield ("checks", i, "by_mode", m), (
                    f"unknown mode '{m}' (modes: {', '.join(names)})")
    for i, r in enumerate(config.routes):
        for j, m in enumerate(r.modes or []):
            if m not in names:
                yield ("routes", i, "modes", j), f"unknown mode '{m}' (modes: {', '.join(names)})"


def _people(config: Config) -> Iterator[Problem]:
    for name, p in config.people.items():
        if not any((p.email, p.slack, p.signal, p.whatsapp, p.webhook)):
            yield ("people", name), (
                f"person '{name}' has no usable channel (give email, slack, signal, "
                "whatsapp or webhook)"
            )
        for k, kind in enumerate(p.order or []):
            if getattr(p, kind) is None:
                yield ("people", name, "order", k), f"'{kind}' is in order but not set for {name}"
    for team, t in config.teams.items():
        for k, member in enumerate(t.members):
            if member not in config.people:
                yield ("teams", team, "members", k), f"unknown person '{member}'"
        if t.rota:
            for k, member in enumerate(t.rota.order):
                if member not in config.people:
                    yield ("teams", team, "rota", "order", k), f"unknown person '{member}'"
        for k, o in enumerate(t.overrides):
            if o.person not in config.people:
                yield ("teams", team, "overrides", k, "person"), f"unknown person '{o.person}'"


def _digest(config: Config) -> Iterator[Problem]:
    if config.digest is None:
        return
    for k, target in enumerate(config.digest.to):
        kind, _, name = target.partition(":")
        known = config.people if kind == "person" else config.channels
        if name not in known:
            yield ("digest", "to", k), f"unknown {kind} '{name}'"


def _slack(config: Config) -> Iterator[Problem]:
    slack = config.slack
    if slack is None:
        return
    if slack.mode == "http" and config.web.address is None:
        yield ("slack", "mode"), ("mode http needs the HTTP server: Slack posts to "
                                  "/slack/events on web.listen, which is off")
    linked: dict[str, str] = {}
    for name, p in config.people.items():
        if p.slack and p.slack.startswith(("U", "W")):
            if p.slack in linked:
                yield ("people", name, "slack"), (
                    f"Slack member {p.slack} is also people.{linked[p.slack]}.slack: one "
                    "Slack user is one person")
            linked.setdefault(p.slack, name)


def _maintenance(config: Config) -> Iterator[Problem]:
    from ..engine.noise import maintenance_windows
    from ..engine.silences import Matcher, SilenceError

    bad = False
    for i, m in enumerate(config.maintenance):
        for j, text in enumerate(m.match):
            try:
                Matcher.parse(text)
            except (SilenceError, ValueError) as e:
                bad = True
                yield ("maintenance", i, "match", j), str(e)
    if config.maintenance and not bad:
        try:
            maintenance_windows(config)
        except (ValueError, KeyError) as e:  # a bad cron or RRULE
            yield ("maintenance",), str(e)
    from ..engine.noise import mode_schedule

    try:
        mode_schedule(config)
    except (ValueError, KeyError) as e:
        yield ("modes", "schedule"), str(e)


def _routes(config: Config) -> Iterator[Problem]:
    groups = {c.group for c in config.checks}
    ids = set(config.check_ids)
    for i, r in enumerate(config.routes):
        receivers = [(("routes", i, "to", j), t) for j, t in enumerate(r.to)]
        for k, esc in enumerate(r.escalations):
            path = ("routes", i, "escalate", k) if isinstance(r.escalate, list) else (
                "routes", i, "escalate")
            receivers += [((*path, "to", j), t) for j, t in enumerate(esc.to)]
        for path, target in receivers:
            problem = _receiver_problem(config, target)
            if problem:
                yield path, problem
        if r.takes_modes:
            yield from _mode_route(r, i)
            continue
        for key, known in (("check", ids), ("group", groups)):
            wanted = getattr(r.match, key)
            for value in [wanted] if isinstance(wanted, str) else (wanted or []):
                if value not in known:
                    yield ("routes", i, "match", key), f"no check has {key} '{value}'"


# A mode change has no check, group, severity or labels, and nobody acknowledges it:
# these keys on a `kind: mode` route would silently never apply, so they are errors.
_ALARM_MATCH = ("check", "group", "severity", "labels")
_ALARM_ONLY = ("repeat", "escalate", "group_wait", "send_resolved")


def _mode_route(r: RouteConfig, i: int) -> Iterator[Problem]:
    for key in _ALARM_MATCH:
        if key in r.match.model_fields_set and getattr(r.match, key):
            yield ("routes", i, "match", key), (
                f"match.{key} selects alarms; a route with kind: mode takes beamline mode "
                "changes, selected by modes: (the modes changed into)")
    for key in _ALARM_ONLY:
        if key in r.model_fields_set:
            yield ("routes", i, key), (
                f"{key} applies to alarms; a mode change is announced once and needs no "
                f"{key} (remove it, or use a separate route for alarms)")


def _fallback(config: Config) -> Iterator[Problem]:
    for j, target in enumerate(config.fallback):
        problem = _receiver_problem(config, target)
        if problem:
            yield ("fallback", j), problem


def _receiver_problem(config: Config, target: str) -> str | None:
    kind, _, name = target.partition(":")
    table = {
        "person": config.people, "team": config.teams, "oncall": config.teams,
        "channel": config.channels,
    }[kind]
    if name not in table:
        return f"unknown {'team' if kind == 'oncall' else kind} '{name}'"
    if kind == "oncall" and not (config.teams[name].rota or config.teams[name].ical):
        return f"team '{name}' has no rota or ical, so it has nobody on call"
    return None
