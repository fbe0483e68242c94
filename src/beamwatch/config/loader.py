"""Read a config file: YAML with line numbers -> secrets and ${ENV} -> pydantic -> cross-checks.

Every problem becomes a `ConfigIssue` (file, line, column, key path, message);
`load_config` raises `ConfigError` carrying all of them at once, so a user
fixes a file in one pass, as `amtool check-config` lets them.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.constructor import DuplicateKeyError
from ruamel.yaml.error import MarkedYAMLError
from ruamel.yaml.resolver import VersionedResolver

from .schema import INTERNAL_CHECKS, CheckConfig, Config, RouteConfig

Path_ = tuple[str | int, ...]
_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass(frozen=True)
class ConfigIssue:
    file: str
    line: int
    column: int
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.path}: " if self.path else ""
        return f"{self.file}:{self.line}:{self.column}: {where}{self.message}"


class ConfigError(Exception):
    def __init__(self, issues: list[ConfigIssue]):
        self.issues = sorted(issues, key=lambda i: (i.line, i.column, i.path))
        super().__init__("\n".join(str(i) for i in self.issues))


def dotted(path: Path_) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


class _Positions:
    """Line/column of every key and list item in the parsed YAML (1-based)."""

    def __init__(self) -> None:
        self.at: dict[Path_, tuple[int, int]] = {}

    def record(self, node: Any, path: Path_ = ()) -> None:
        if isinstance(node, CommentedMap):
            for key in node:
                line, col = node.lc.key(key)
                self.at[path + (str(key),)] = (line + 1, col + 1)
                self.record(node[key], path + (str(key),))
        elif isinstance(node, CommentedSeq):
            for i, item in enumerate(node):
                line, col = node.lc.item(i)
                self.at[path + (i,)] = (line + 1, col + 1)
                self.record(item, path + (i,))

    def find(self, path: Path_) -> tuple[int, int]:
        """The position of the deepest existing prefix of `path`."""
        for n in range(len(path), 0, -1):
            if path[:n] in self.at:
                return self.at[path[:n]]
        return (1, 1)


def _plain(node: Any) -> Any:
    if isinstance(node, dict):
        return {str(k): _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    return node


class _Resolver:
    """${ENV} substitution and `*_file` secrets, collecting issues on the way."""

    def __init__(self, file: str, positions: _Positions, env: dict[str, str], base: Path):
        self.file, self.pos, self.env, self.base = file, positions, env, base
        self.issues: list[ConfigIssue] = []

    def issue(self, path: Path_, message: str) -> None:
        line, col = self.pos.find(path)
        self.issues.append(ConfigIssue(self.file, line, col, dotted(path), message))

    def resolve(self, node: Any, path: Path_ = ()) -> Any:
        if isinstance(node, dict):
            out = {}
            for key, value in node.items():
                if key.endswith("_file") and isinstance(value, str):
                    where = path + (key,)
                    name = _ENV.sub(lambda m, where=where: self._env(m.group(1), where), value)
                    secret = self._read_secret_file(name, path + (key,))
                    out[key[: -len("_file")]] = secret
                else:
                    out[key] = self.resolve(value, path + (key,))
            return out
        if isinstance(node, list):
            return [self.resolve(v, path + (i,)) for i, v in enumerate(node)]
        if isinstance(node, str):
            return _ENV.sub(lambda m: self._env(m.group(1), path), node)
        return node

    def _env(self, name: str, path: Path_) -> str:
        if name not in self.env:
            self.issue(path, f"environment variable {name} is not set")
            return ""
        return self.env[name]

    def _read_secret_file(self, name: str, path: Path_) -> str:
        p = Path(name) if os.path.isabs(name) else self.base / name
        try:
            return p.read_text().strip()
        except OSError as e:
            self.issue(path, f"cannot read secret file {p}: {e.strerror}")
            return ""


def _pydantic_issues(err: ValidationError, file: str, pos: _Positions, prefix: Path_ = (),
                     index_maps: dict[str, list[int]] | None = None) -> list[ConfigIssue]:
    out = []
    for e in err.errors():
        path = prefix + tuple(e["loc"])
        path = _original_path(path, index_maps or {})
        path = tuple(p for p in path if not (isinstance(p, str) and p.startswith("function-")))
        # pydantic puts union branch names into loc; keep only real keys
        path = tuple(p for p in path if not (isinstance(p, str) and p in _UNION_TAGS))
        line, col = pos.find(path)
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
        elif e["type"] == "missing":
            msg = "required key is missing"
        elif msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        out.append(ConfigIssue(file, line, col, dotted(path), msg))
    return out


_UNION_TAGS = {"list[EscalationConfig]", "EscalationConfig", "list[str]", "str", "AllOf",
               "constrained-str", "ArchiveRef", "archive-off"}


def parse_config(text: str, file: str = "<config>", env: dict[str, str] | None = None,
                 base: Path | None = None) -> Config:
    """Parse config text; raise ConfigError with every issue found.

    Two passes when needed: a fast one (ruamel's C parser, no positions) that
    accepts a valid file — 10k checks load in about a second instead of ten —
    and, only if anything is wrong, the round-trip parser that knows the line
    and column of every key, to say where."""
    env = dict(os.environ) if env is None else env
    try:
        config = _parse_fast(text, file, env, base)
    except Exception:  # whatever the fast pass trips on, the careful pass explains
        config = None
    return config if config is not None else _parse_with_positions(text, file, env, base)


class _NoPositions(_Positions):
    def find(self, path: Path_) -> tuple[int, int]:
        return (0, 0)


class _OneVersionResolver(VersionedResolver):
    """ruamel's resolver asks for the YAML version of every scalar, and with the C parser
    each answer costs a caught AttributeError (half of loading 10k checks). The C
    parser has one version per load, so it is asked once."""

    _version: Any = None

    @property
    def processing_version(self) -> Any:
        if self._version is None:
            self._version = VersionedResolver.processing_version.fget(self)
        return self._version


def _parse_fast(text: str, file: str, env: dict[str, str], base: Path | None) -> Config | None:
    yaml = YAML(typ="safe")
    yaml.allow_duplicate_keys = False
    yaml.Resolver = _OneVersionResolver
    doc = yaml.load(text)
    if not isinstance(doc, dict):
        return None
    pos = _NoPositions()
    resolver = _Resolver(file, pos, env, base or Path("."))
    data = resolver.resolve(_plain(doc))
    if resolver.issues:
        return None
    config, _, issues = _validate(data, file, pos)
    if config is None or issues or _duplicate_ids(data, file, pos):
        return None
    config = _relative_paths(with_internal_checks(config), base)
    from .crossref import cross_check

    return None if cross_check(config, _raw_check_ids(data)) else config


def with_internal_checks(config: Config) -> Config:
    """The built-in `beamwatch.*` checks after the user's, unless `monitor: {checks: false}`;
    a check the user declares with the same id replaces the built-in one."""
    if not config.monitor.checks:
        return config
    declared = set(config.check_ids)
    extra = [CheckConfig.model_validate(c) for c in INTERNAL_CHECKS if c["id"] not in declared]
    return config.model_copy(update={"checks": [*config.checks, *extra]}) if extra else config


def _relative_paths(config: Config, base: Path | None) -> Config:
    """A relative SQLite file or templates folder is next to the config file."""
    if base is None:
        return config
    if config.storage.url.startswith("sqlite:///"):
        db = Path(config.storage.url[len("sqlite:///"):]).expanduser()
        if str(db) != ":memory:" and not db.is_absolute():
            config = config.model_copy(update={"storage": config.storage.model_copy(
                update={"url": f"sqlite:///{(base / db).resolve()}"})})
    if config.templates:
        folder = Path(config.templates).expanduser()
        if not folder.is_absolute():
            config = config.model_copy(update={"templates": str(base / folder)})
    checks = [_relative_inputs(c, base) for c in config.checks]
    if any(new is not old for new, old in zip(checks, config.checks, strict=True)):
        config = config.model_copy(update={"checks": checks})
    return config


def _relative_inputs(check: CheckConfig, base: Path) -> CheckConfig:
    """file:, disk:, log: and read: paths (and globs) are next to the config file too."""
    update = {}
    for key in ("file", "disk", "log", "read"):
        value = getattr(check, key)
        if value is not None and not Path(value).expanduser().is_absolute():
            update[key] = str(base / value)
    return check.model_copy(update=update) if update else check


def yaml_mapping(text: str, file: str) -> dict:
    """A YAML document that must be a mapping, with the positions of its keys kept
    (ruamel's round-trip types); a duplicate key, a syntax error, an empty file or
    another top level is a ConfigError naming the file and line."""
    yaml = YAML(typ="rt")
    yaml.allow_duplicate_keys = False
    try:
        doc = yaml.load(text)
    except DuplicateKeyError as e:
        raise ConfigError([_mark_issue(file, e, "duplicate key")]) from None
    except MarkedYAMLError as e:
        raise ConfigError([_mark_issue(file, e, "YAML syntax error")]) from None
    if doc is None:
        raise ConfigError([ConfigIssue(file, 1, 1, "", "the file is empty")])
    if not isinstance(doc, dict):
        raise ConfigError([ConfigIssue(file, 1, 1, "", "the top level must be a mapping of keys")])
    return doc


def _parse_with_positions(text: str, file: str, env: dict[str, str],
                          base: Path | None) -> Config:
    doc = yaml_mapping(text, file)
    pos = _Positions()
    pos.record(doc)
    resolver = _Resolver(file, pos, env, base or Path("."))
    data = resolver.resolve(_plain(doc))
    issues = list(resolver.issues)
    config, index_maps, section_issues = _validate(data, file, pos)
    issues += section_issues + _duplicate_ids(data, file, pos)
    if config is not None:
        config = _relative_paths(with_internal_checks(config), base)
        from .crossref import cross_check

        for path, message in cross_check(config, _raw_check_ids(data)):
            path = _original_path(path, index_maps)
            line, col = pos.find(path)
            issues.append(ConfigIssue(file, line, col, dotted(path), message))
    if issues or config is None:
        raise ConfigError(issues)
    return config


_LIST_SECTIONS = {"checks": CheckConfig, "routes": RouteConfig}


def _validate(data: dict, file: str, pos: _Positions):
    """Validate list sections item by item, so one bad check does not hide the
    cross-reference errors of the others; then the whole file."""
    issues: list[ConfigIssue] = []
    index_maps: dict[str, list[int]] = {}
    data = dict(data)
    for section, model in _LIST_SECTIONS.items():
        items = data.get(section)
        if not isinstance(items, list):
            continue
        kept, kept_index = [], []
        for i, item in enumerate(items):
            try:
                # kept as the model: the whole file's validation takes it as it is
                # instead of validating every check again (10k checks: half a second)
                kept.append(model.model_validate(item))
            except ValidationError as e:
                issues += _pydantic_issues(e, file, pos, prefix=(section, i))
                continue
            kept_index.append(i)
        data[section] = kept
        index_maps[section] = kept_index
    try:
        return Config.model_validate(data), index_maps, issues
    except ValidationError as e:
        return None, index_maps, issues + _pydantic_issues(e, file, pos, index_maps=index_maps)


def _duplicate_ids(data: dict, file: str, pos: _Positions) -> list[ConfigIssue]:
    checks = data.get("checks")
    seen: dict[str, int] = {}
    out = []
    for i, c in enumerate(checks if isinstance(checks, list) else []):
        cid = c.get("id") if isinstance(c, dict) else None
        if not isinstance(cid, str):
            continue
        if cid in seen:
            line, col = pos.find(("checks", i, "id"))
            msg = f"duplicate check id '{cid}' (first at checks[{seen[cid]}])"
            out.append(ConfigIssue(file, line, col, f"checks[{i}].id", msg))
        else:
            seen[cid] = i
    return out


def _raw_check_ids(data: dict) -> set[str]:
    checks = data.get("checks")
    if not isinstance(checks, list):
        return set()
    return {c["id"] for c in checks if isinstance(c, dict) and isinstance(c.get("id"), str)}


def _original_path(path: Path_, index_maps: dict[str, list[int]]) -> Path_:
    if len(path) >= 2 and path[0] in index_maps and isinstance(path[1], int):
        kept = index_maps[path[0]]
        if path[1] >= len(kept):  # a built-in check (after the user's): no line of its own
            return (path[0],)
        return (path[0], kept[path[1]], *path[2:])
    return path


def _mark_issue(file: str, e: MarkedYAMLError, what: str) -> ConfigIssue:
    mark = e.problem_mark or e.context_mark
    line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
    problem = " ".join(str(x) for x in (e.context, e.problem) if x)
    problem = problem.replace("\n", " ").strip()
    return ConfigIssue(file, line, col, "", f"{what}: {problem}")


def load_config(path: str | Path, env: dict[str, str] | None = None) -> Config:
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as e:
        raise ConfigError(
            [ConfigIssue(str(p), 1, 1, "", f"cannot read the file: {e.strerror}")]) from None
    return parse_config(text, str(p), env, p.parent)
