"""The sim's `.db` files: where they are, and which records a load creates.

The IOC expands macros itself; this module repeats just enough of EPICS
macLib (`$(NAME)`, `${NAME}`, `$(NAME=default)`, macros inside macro values)
to list the PV names without starting an IOC — for `sim run` to print the
count, for tests to know what must answer, and to catch a macro that a load
forgot before an IOC prints a warning nobody reads.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import cache
from pathlib import Path

DB_DIR = Path(__file__).resolve().parent / "db"

_MACRO = re.compile(r"\$[({]([A-Za-z_][A-Za-z0-9_]*)(?:=([^)}]*))?[)}]")
_RECORD = re.compile(r'^\s*record\(\s*(\w+)\s*,\s*"([^"]+)"\s*\)', re.MULTILINE)
_MAX_DEPTH = 10


class MacroError(ValueError):
    """A macro is used but neither defined nor given a default."""


def db_path(name: str) -> Path:
    path = DB_DIR / name
    if not path.is_file():
        raise FileNotFoundError(f"no database {name} in {DB_DIR}")
    return path


@cache
def _db_text(name: str) -> str:
    return db_path(name).read_text()


def expand(text: str, macros: Mapping[str, str], _depth: int = 0) -> str:
    """Substitute macros as EPICS does, including macros inside macro values."""
    if _depth > _MAX_DEPTH:
        raise MacroError(f"macros nest deeper than {_MAX_DEPTH} levels in '{text}'")

    def one(m: re.Match[str]) -> str:
        name, default = m.group(1), m.group(2)
        if name in macros:
            value = macros[name]
        elif default is not None:
            value = default
        else:
            raise MacroError(f"macro $({name}) is not defined")
        return expand(value, macros, _depth + 1)

    return _MACRO.sub(one, text)


def record_names(db: str, macros: Mapping[str, str]) -> list[tuple[str, str]]:
    """(record type, expanded record name) of every record `db` creates with `macros`."""
    return [(rtype, expand(name, macros)) for rtype, name in _RECORD.findall(_db_text(db))]


def macro_text(macros: Mapping[str, str]) -> str:
    """The `-m` argument for a load: NAME=VALUE pairs, values quoted when needed."""
    parts = []
    for key, value in macros.items():
        value = str(value)
        if '"' in value or "\\" in value:
            raise MacroError(f"macro {key}: quotes and backslashes are not supported: {value!r}")
        if not value or any(c in value for c in ",=' \t"):
            value = f'"{value}"'
        parts.append(f"{key}={value}")
    return ",".join(parts)
