"""Reading a Phoebus alarm configuration (XML) into a tree, with line numbers.

The tags are those of Phoebus's XmlModelReader (app/alarm/model): `config` >
`component`* > `pv`, each `pv` with `description`, `enabled` (true/false or a
date it is disabled until), `latching` (true when missing), `annunciating`
(false when missing), `delay` (s), `count`, `filter`, and any number of
`guidance`, `display`, `command` (title + details) and `automated_action`
(title + details + delay); components carry guidance, displays, commands and
automated actions too. `xi:include href=... xpointer=ID` is followed when the
file exists (Phoebus parses with XInclude on).

expat directly rather than ElementTree: it gives each element its line, so the
import report can say where a PV is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from xml.parsers import expat

XINCLUDE = "http://www.w3.org/2001/XInclude"
MAX_INCLUDE_DEPTH = 8


class PhoebusError(Exception):
    """The file is not a Phoebus alarm configuration: one line, with file:line."""


@dataclass
class Element:
    tag: str  # "ns tag" for namespaced elements (expat's namespace_separator)
    attrib: dict[str, str]
    line: int
    file: str
    children: list[Element] = field(default_factory=list)
    text: str = ""

    def child_texts(self, tag: str) -> list[str]:
        return [c.text.strip() for c in self.children if c.tag == tag]

    def first_text(self, tag: str) -> str | None:
        texts = self.child_texts(tag)
        return texts[0] if texts else None


@dataclass(frozen=True)
class TitleDetail:
    kind: str  # guidance, display, command, automated_action
    title: str
    details: str
    delay: float | None = None  # automated actions only


@dataclass
class PvItem:
    name: str
    path: tuple[str, ...]  # component names from the config's root down to the PV's parent
    line: int
    file: str
    description: str | None
    enabled: str | None  # raw: "true", "false", a date, or None (missing: enabled)
    latching: str | None
    annunciating: str | None
    delay: str | None
    count: str | None
    filter: str | None
    texts: list[TitleDetail]
    inherited: list[tuple[str, list[TitleDetail]]]  # (component path, its items), nearest first
    unknown: list[str]


@dataclass
class PhoebusTree:
    name: str
    file: str
    pvs: list[PvItem]
    problems: list[tuple[str, int, str]]  # (file, line, what) not tied to one PV


PV_TAGS = {"description", "enabled", "latching", "annunciating", "delay", "count", "filter",
           "guidance", "display", "command", "automated_action"}
COMPONENT_TAGS = {"guidance", "display", "command", "automated_action", "component", "pv"}


def parse(path: Path, depth: int = 0) -> Element:
    parser = expat.ParserCreate(namespace_separator=" ")
    root: list[Element] = []
    stack: list[Element] = []

    def start(tag: str, attrib: dict[str, str]) -> None:
        el = Element(tag, dict(attrib), parser.CurrentLineNumber, str(path))
        if stack:
            stack[-1].children.append(el)
        else:
            root.append(el)
        stack.append(el)

    def end(tag: str) -> None:
        stack.pop()

    def chars(data: str) -> None:
        if stack:
            stack[-1].text += data

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = chars
    try:
        data = path.read_bytes()
    except OSError as e:
        raise PhoebusError(f"{path}: cannot read the file: {e.strerror}") from None
    try:
        parser.Parse(data, True)
    except expat.ExpatError as e:
        raise PhoebusError(f"{path}:{e.lineno}:{e.offset + 1}: not well-formed XML: "
                           f"{expat.errors.messages[e.code]}") from None
    return root[0]


def read(path: Path) -> PhoebusTree:
    """The PVs of a Phoebus alarm configuration, in Phoebus's order (a component's own
    PVs before its sub-components'), duplicates dropped as Phoebus drops them."""
    top = parse(path)
    if top.tag != "config":
        raise PhoebusError(f"{path}:{top.line}: expected <config name=...> as the root "
                           f"element, not <{top.tag}>: is this a Phoebus alarm configuration?")
    tree = PhoebusTree(top.attrib.get("name", path.stem), str(path), [], [])
    seen: dict[str, str] = {}
    _walk(tree, _included(tree, top, 0), (), [], seen)
    return tree


def _included(tree: PhoebusTree, el: Element, depth: int) -> Element:
    """`el` with every xi:include among its children replaced by what it points at."""
    out: list[Element] = []
    for child in el.children:
        if child.tag == f"{XINCLUDE} include":
            out.extend(_include(tree, child, depth))
        else:
            out.append(_included(tree, child, depth))
    el.children = out
    return el


def _include(tree: PhoebusTree, inc: Element, depth: int) -> list[Element]:
    href, pointer = inc.attrib.get("href", ""), inc.attrib.get("xpointer")
    target = (Path(inc.file).parent / href) if href else None
    why = None
    if depth >= MAX_INCLUDE_DEPTH:
        why = f"more than {MAX_INCLUDE_DEPTH} nested includes"
    elif target is None or not target.is_file():
        why = "the file does not exist here"
    if why is not None:
        tree.problems.append((inc.file, inc.line, f"xi:include of {href!r} not followed: {why}; "
                                                  "import that file on its own"))
        return []
    assert target is not None
    try:
        root = parse(target, depth + 1)
    except PhoebusError as e:
        tree.problems.append((inc.file, inc.line, f"xi:include not followed: {e}"))
        return []
    if pointer:
        found = _by_id(root, pointer)
        if found is None:
            tree.problems.append((inc.file, inc.line, f"xi:include of {href!r}: no element "
                                                      f"with id {pointer!r} there"))
            return []
        return [_included(tree, found, depth + 1)]
    return [_included(tree, root, depth + 1)]


def _by_id(el: Element, ident: str) -> Element | None:
    if el.attrib.get("id") == ident:
        return el
    for child in el.children:
        found = _by_id(child, ident)
        if found is not None:
            return found
    return None


def _items(el: Element) -> list[TitleDetail]:
    out = []
    for child in el.children:
        if child.tag in ("guidance", "display", "command", "automated_action"):
            delay = child.first_text("delay") if child.tag == "automated_action" else None
            try:
                seconds = float(delay) if delay else None
            except ValueError:
                seconds = None
            out.append(TitleDetail(child.tag, child.first_text("title") or "",
                                   child.first_text("details") or "", seconds))
    return out


def _walk(tree: PhoebusTree, node: Element, path: tuple[str, ...],
          inherited: list[tuple[str, list[TitleDetail]]], seen: dict[str, str]) -> None:
    # Phoebus: first this level's PVs, then the sub-components (a duplicate PV deeper
    # down is the one ignored)
    for child in node.children:
        if child.tag == "pv":
            _pv(tree, child, path, inherited, seen)
    for child in node.children:
        if child.tag == "component":
            name = child.attrib.get("name")
            if not name:
                tree.problems.append((child.file, child.line, "component without a name: "
                                                              "skipped with its PVs"))
                continue
            items = _items(child)
            here = path + (name,)
            _walk(tree, child, here, ([("/".join(here), items)] if items else []) + inherited,
                  seen)
        elif child.tag not in COMPONENT_TAGS:
            tree.problems.append((child.file, child.line, f"unknown element <{child.tag}> in a "
                                                          "component: ignored"))


def _pv(tree: PhoebusTree, el: Element, path: tuple[str, ...],
        inherited: list[tuple[str, list[TitleDetail]]], seen: dict[str, str]) -> None:
    name = el.attrib.get("name", "").strip()
    if not name:
        tree.problems.append((el.file, el.line, "pv without a name: skipped"))
        return
    where = "/".join((tree.name, *path))
    if name in seen:
        tree.problems.append((el.file, el.line, f"PV {name} is already at {seen[name]}: "
                                                f"this duplicate at {where} is ignored, as "
                                                "Phoebus ignores it"))
        return
    seen[name] = where
    tree.pvs.append(PvItem(
        name=name, path=path, line=el.line, file=el.file,
        description=el.first_text("description"), enabled=el.first_text("enabled"),
        latching=el.first_text("latching"), annunciating=el.first_text("annunciating"),
        delay=el.first_text("delay"), count=el.first_text("count"),
        filter=el.first_text("filter"), texts=_items(el), inherited=inherited,
        unknown=sorted({c.tag for c in el.children if c.tag not in PV_TAGS}),
    ))
