"""`beamwatch import phoebus`: a Phoebus alarm configuration as beamwatch checks.

Every PV becomes a check or a listed reason why not; every setting that does
not map exactly is listed with the PV it belongs to, never dropped silently.
The mapping (docs/decisions/0010-phoebus-import.md):

    pv name              pv: (a CA check with no limits: the record's own severity,
                         as the Phoebus alarm server uses it); id: a slug of the name
    component path       group: "Area/Sub-area" (PVs at the top: the config's name)
    description          description:
    enabled false        not imported (listed); a date: imported, listed
    latching             latch: (true when the tag is missing, as in Phoebus)
    annunciating true    listed: beamwatch has no voice annunciator
    delay                for:
    count (with delay)   count: {times: count, within: delay}
    filter               when: "severity >= MINOR and (FILTER) > 0" when every name in
                         it is a PV of this import; listed either way
    guidance, display,   runbook: text (the component's too), shown in every message
    command, automated
    action
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.scalarstring import LiteralScalarString

from ..config import ConfigError, parse_config
from ..config.schema import ID_MAX, INTERNAL_PREFIX
from ..timefmt import format_duration
from .phoebus_xml import PhoebusError, PhoebusTree, PvItem, TitleDetail, read

__all__ = ["ImportResult", "Note", "PhoebusError", "import_file"]

TITLES = {"guidance": "Guidance", "display": "Display", "command": "Command",
          "automated_action": "Automated action"}


@dataclass(frozen=True)
class Note:
    """Something of the Phoebus configuration that did not map exactly."""

    item: str  # the Phoebus setting: enabled, annunciating, filter, count, id, ...
    what: str  # "not imported", "not mapped", "approximated", "renamed", "imported"
    why: str

    def to_json(self) -> dict[str, str]:
        return {"item": self.item, "what": self.what, "why": self.why}


@dataclass
class PvResult:
    pv: str
    path: str  # Phoebus path: Config/Area/Sub/PV
    file: str
    line: int
    check: str | None  # the check id, None when not imported
    notes: list[Note] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"pv": self.pv, "path": self.path, "file": self.file, "line": self.line,
                "check": self.check, "notes": [n.to_json() for n in self.notes]}


@dataclass
class ImportResult:
    source: str
    name: str  # the Phoebus config name
    pvs: list[PvResult]
    problems: list[str]  # file:line: what, not tied to one PV
    checks: list[dict[str, Any]]
    fragment: bool

    @property
    def imported(self) -> int:
        return sum(p.check is not None for p in self.pvs)

    def document(self) -> dict[str, Any]:
        return {"checks": self.checks} if self.fragment else {"beamline": self.name,
                                                               "checks": self.checks}

    def yaml(self) -> str:
        head = [f"# Imported by `beamwatch import phoebus` from {Path(self.source).name}",
                f"# (Phoebus alarm configuration {self.name!r}): {self.imported} of "
                f"{len(self.pvs)} PVs are checks.",
                "# What did not map exactly (see docs/decisions/0010-phoebus-import.md):"]
        lines = [f"#   {p.pv}: {n.item}: {n.what}: {n.why}" for p in self.pvs for n in p.notes]
        lines += [f"#   {problem}" for problem in self.problems]
        buf = io.StringIO()
        yaml = YAML()
        yaml.default_flow_style = False
        yaml.width = 100
        yaml.indent(mapping=2, sequence=4, offset=2)
        yaml.dump(self.document(), buf)
        return "\n".join(head + (lines or ["#   nothing"])) + "\n" + buf.getvalue()

    def to_json(self) -> dict[str, Any]:
        return {"source": self.source, "config": self.name, "pvs": len(self.pvs),
                "checks": self.imported, "fragment": self.fragment,
                "not_mapped": sum(len(p.notes) for p in self.pvs) + len(self.problems),
                "per_pv": [p.to_json() for p in self.pvs], "problems": self.problems}


def import_file(path: Path, *, fragment: bool = False) -> ImportResult:
    """Read `path` and map it; raises PhoebusError (one line) if it is not a Phoebus
    alarm configuration. The result always passes the config loader."""
    tree = read(path)
    ids = _Ids()
    pvs: list[PvResult] = []
    checks: list[dict[str, Any]] = []
    names = {pv.name for pv in tree.pvs if (pv.enabled or "").strip().lower() != "false"}
    ids_by_pv = {pv.name: ids.reserve(pv.name) for pv in tree.pvs}
    for pv in tree.pvs:
        result, check = _map_pv(tree, pv, ids_by_pv, names)
        pvs.append(result)
        if check is not None:
            checks.append(check)
    problems = [f"{Path(f).name}:{line}: {what}" for f, line, what in tree.problems]
    result = ImportResult(str(path), tree.name, pvs, problems, checks, fragment)
    _validate(result)
    return result


# -- one PV ------------------------------------------------------------------------------


def _map_pv(tree: PhoebusTree, pv: PvItem, ids: dict[str, str], names: set[str]
            ) -> tuple[PvResult, dict[str, Any] | None]:
    cid = ids[pv.name]
    res = PvResult(pv.name, "/".join((tree.name, *pv.path, pv.name)), Path(pv.file).name,
                   pv.line, cid)
    note = res.notes.append
    if cid != _slug(pv.name):
        note(Note("id", "renamed", f"the id {_slug(pv.name)!r} was taken: {cid!r}"))
    enabled = (pv.enabled or "true").strip()
    if enabled.lower() == "false":
        note(Note("enabled", "not imported", "disabled in Phoebus (enabled: false); add "
                                             "it by hand if it should be watched"))
        res.check = None
        return res, None
    check: dict[str, Any] = {"id": cid, "pv": pv.name}
    if pv.path:
        check["group"] = "/".join(pv.path)
    else:
        check["group"] = tree.name
    if pv.description and pv.description.strip():
        check["description"] = _literal(pv.description.strip(), "description", note)
    if enabled.lower() != "true":
        note(Note("enabled", "imported", f"Phoebus disables it until {enabled}; beamwatch "
                                         "watches it now: `beamwatch silence` it until then "
                                         "if that still holds"))
    if _flag(pv.latching, default=True, note=note, item="latching"):
        check["latch"] = True
    if _flag(pv.annunciating, default=False, note=note, item="annunciating"):
        note(Note("annunciating", "not mapped", "beamwatch has no voice annunciator; the "
                                                "alarm is notified by routes: as any other"))
    delay = _number(pv.delay, "delay", note)
    count = _number(pv.count, "count", note)
    if delay:
        check["for"] = format_duration(delay)
    if count and not delay:
        note(Note("count", "not mapped", f"count {count:g} without a delay does nothing in "
                                         "Phoebus (the delay is the count's window)"))
    elif count == 1 and delay:
        del check["for"]
        note(Note("count", "approximated", f"count 1 within {delay:g}s alarms at the first "
                                           "departure from OK: imported without for:"))
    elif count and delay:
        check["count"] = {"times": int(count), "within": format_duration(delay)}
    if pv.filter:
        when = _filter(pv.filter, ids, names)
        if isinstance(when, str):
            check["when"] = when
            check["severity"] = "major"
            note(Note("filter", "approximated", f"{pv.filter.strip()!r} became when: "
                                                "(alarm only while it holds); a true when: "
                                                "gives one severity, so MINOR record alarms "
                                                "are MAJOR while the filter holds"))
        else:
            note(Note("filter", "not mapped", f"{pv.filter.strip()!r}: {when[0]}; the check "
                                              "alarms whatever the filter says"))
    runbook = _runbook(pv)
    if runbook:
        check["runbook"] = LiteralScalarString(_literal(runbook, "runbook", note))
    if any(t.kind == "automated_action" for t in pv.texts) or any(
            t.kind == "automated_action" for _, items in pv.inherited for t in items):
        note(Note("automated_action", "not mapped", "beamwatch runs no commands on alarm; the "
                                                    "action is in the runbook text"))
    for tag in pv.unknown:
        note(Note(tag, "not mapped", f"unknown element <{tag}>: ignored"))
    return res, check


_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _literal(text: str, item: str, note) -> str:
    """`${NAME}` in a config string is an environment variable for the loader; in
    guidance it is a shell or macro reference for the reader: written as `$NAME`."""
    if not _ENV_REF.search(text):
        return text
    note(Note(item, "approximated", "${NAME} written as $NAME (the config would read "
                                    "${NAME} from beamwatch's environment)"))
    return _ENV_REF.sub(r"$\1", text)


def _flag(raw: str | None, *, default: bool, note, item: str) -> bool:
    if raw is None or not raw.strip():
        return default
    value = raw.strip().lower()
    if value not in ("true", "false"):
        note(Note(item, "not mapped", f"{raw.strip()!r} is not true or false: "
                                      f"{str(default).lower()} (the Phoebus default) used"))
        return default
    return value == "true"


def _number(raw: str | None, item: str, note) -> float:
    if raw is None or not raw.strip():
        return 0.0
    try:
        value = float(raw)
    except ValueError:
        note(Note(item, "not mapped", f"{raw.strip()!r} is not a number: ignored"))
        return 0.0
    if value < 0:
        note(Note(item, "not mapped", f"{value:g} is negative: ignored"))
        return 0.0
    # Phoebus reads the delay as a double and keeps whole seconds, the count as an int
    return float(int(value))


def _runbook(pv: PvItem) -> str:
    """Guidance first (what to do), then displays, commands, automated actions; the PV's
    own, then each enclosing component's, nearest first."""
    blocks = [_item_text(t) for t in _ordered(pv.texts)]
    for where, items in pv.inherited:
        blocks += [f"From {where}: " + _item_text(t) for t in _ordered(items)]
    return "\n".join(blocks) + "\n" if blocks else ""


def _ordered(items: list[TitleDetail]) -> list[TitleDetail]:
    return sorted(items, key=lambda t: list(TITLES).index(t.kind))


def _item_text(t: TitleDetail) -> str:
    label = TITLES[t.kind]
    if t.delay is not None:
        label += f" (after {t.delay:g}s in Phoebus)"
    head = f"{label}: {t.title}" if t.title else f"{label}:"
    details = [line.rstrip() for line in t.details.strip().splitlines()]
    return "\n".join([head] + [f"  {line}" if line else "" for line in details])


# -- ids ---------------------------------------------------------------------------------


def _slug(name: str) -> str:
    """A valid check id from a PV name: BL04I-VA-GAUGE-01:P -> BL04I-VA-GAUGE-01.P."""
    text = name.replace(":", ".")
    text = re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-.")
    if not text or not text[0].isalpha() or text.startswith(INTERNAL_PREFIX):
        text = "pv-" + text
    return text[:ID_MAX].rstrip("-.") or "pv"


class _Ids:
    def __init__(self) -> None:
        self.taken: set[str] = set()

    def reserve(self, name: str) -> str:
        base = _slug(name)
        cid, n = base, 1
        while cid.lower() in self.taken:  # case-insensitive: ids end up in URLs and files
            n += 1
            suffix = f"-{n}"
            cid = base[:ID_MAX - len(suffix)] + suffix
        self.taken.add(cid.lower())
        return cid


# -- filters -----------------------------------------------------------------------------

_TOKEN = re.compile(r"""\s*(?:
    (?P<quoted>'[^']*'|"[^"]*")
  | (?P<number>\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?)
  | (?P<name>[A-Za-z_][A-Za-z0-9_:.]*)
  | (?P<op>&&|\|\||==|!=|<=|>=|[<>!+\-*/()])
)""", re.VERBOSE)
_OPS = {"&&": " and ", "||": " or ", "!": " not "}


def _filter(expression: str, ids: dict[str, str], names: set[str]) -> str | tuple[str]:
    """The Phoebus filter as a when: expression, or (why not,)."""
    out, missing, pos, text = [], [], 0, expression.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            return (f"{text[pos:pos + 10]!r} is beyond what the importer translates "
                    "(PV names, numbers, + - * /, comparisons, && || !)",)
        pos = m.end()
        if m["quoted"] or m["name"]:
            pv = (m["quoted"] or "")[1:-1] if m["quoted"] else m["name"]
            if pos < len(text) and text[pos:].lstrip().startswith("(") and not m["quoted"]:
                return (f"the function {pv}() is beyond what the importer translates",)
            if pv not in names:
                missing.append(pv)
                continue
            out.append(f"checks[{ids[pv]!r}]")
        elif m["number"]:
            out.append(m["number"])
        else:
            out.append(_OPS.get(m["op"], f" {m['op']} " if m["op"] not in "()" else m["op"]))
    if missing:
        return (f"it reads {', '.join(sorted(set(missing)))}, not a PV of this configuration "
                "(beamwatch's when: reads other checks)",)
    body = re.sub(r"\s+", " ", "".join(out)).strip()
    return f"severity >= MINOR and ({body}) > 0"


# -- the result must load ------------------------------------------------------------------


def _validate(result: ImportResult) -> None:
    """Load the result with the real loader. A when: the loader refuses is dropped and
    listed; anything else refused is a bug of the importer, raised as such."""
    for _ in range(len(result.checks) + 1):
        text = _loader_text(result)
        try:
            parse_config(text, "<import>", env={})
            return
        except ConfigError as e:
            if not _drop_refused_whens(result, e):  # a bug of the importer: say what
                raise PhoebusError(f"{result.source}: the imported configuration does not "
                                   f"load ({e.issues[0]}); please report this") from None
    raise PhoebusError(f"{result.source}: the imported configuration does not load")


def _loader_text(result: ImportResult) -> str:
    """What the loader sees: a fragment gets a beamline: to load."""
    doc = result.document()
    if result.fragment:
        doc = {"beamline": result.name, **doc}
    buf = io.StringIO()
    YAML().dump(doc, buf)
    return buf.getvalue()


def _drop_refused_whens(result: ImportResult, error: ConfigError) -> bool:
    dropped = False
    by_id = {p.check: p for p in result.pvs}
    for issue in error.issues:
        m = re.match(r"checks\[(\d+)\]\.when", issue.path)
        if not m:
            continue
        check = result.checks[int(m[1])]
        if check.pop("when", None) is not None:
            check.pop("severity", None)
            pv = by_id[check["id"]]
            pv.notes = [n for n in pv.notes if n.item != "filter"]
            pv.notes.append(Note("filter", "not mapped", f"the translated filter was refused: "
                                                         f"{issue.message}"))
            dropped = True
    return dropped
