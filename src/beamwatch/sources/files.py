"""Files on disk: `file:` (a glob's newest file age, count, growth), `disk:` (free
space), `log:` (matches of a regex in a tailed log), `read:` (a value in a JSON or
YAML file).

Every read is blocking I/O, so it runs in a worker thread; a check keeps at most one
read in flight: a poll that times out (a huge first scan, a hung NFS mount) leaves
the read running, and the next poll waits for that read instead of starting a second
one. What a check remembers between polls (the glob's directory cache, the log's
offset, its recent matches) is dropped when its input changes on a reload.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..config.schema import CheckConfig, Config
from . import jsonpath
from .filescan import GlobScan, ScanError
from .logtail import LogTail, TailError
from .polled import PolledSource, ReadError, Reading

MAX_DOCUMENT = 16 * 1024 * 1024  # read: a bigger file is not a status file
MAX_LAST = 1000  # characters of a `last` log line kept as the value


class _LogState:
    def __init__(self, check: CheckConfig):
        self.tail = LogTail(check.log or "")
        self.regex = re.compile(check.match or "")
        self.times: deque[float] = deque()  # when each recent match was read
        self.last: str | None = None
        for line in self.tail.seed():  # the last match already in the file, for `last`
            if self.regex.search(line):
                self.last = line[:MAX_LAST]

    def take(self, lines: list[str], now: float) -> None:
        for line in lines:
            if self.regex.search(line):
                self.times.append(now)
                self.last = line[:MAX_LAST]

    def matches_since(self, since: float) -> int:
        while self.times and self.times[0] <= since:
            self.times.popleft()
        return len(self.times)


class FileSource(PolledSource):
    kind = "files"
    default_timeout = 30.0  # the first scan of a big data tree takes a while

    def __init__(self, name: str, config: Config, clock=None):
        self._state: dict[str, tuple[tuple, Any]] = {}
        self._inflight: dict[str, asyncio.Future] = {}
        super().__init__(name, config, clock)

    def reconfigure(self, config: Config) -> None:
        super().reconfigure(config)
        for check_id in list(self._state):
            check = self.checks.get(check_id)
            if check is None or _state_key(check) != self._state[check_id][0]:
                self._drop(check_id)

    async def close(self) -> None:
        for check_id in list(self._state):
            self._drop(check_id)

    async def read(self, check: CheckConfig) -> Reading:
        readers: dict[str, Callable[[CheckConfig], Reading]] = {
            "file": self._read_glob, "disk": self._read_disk, "log": self._read_log,
            "read": self._read_document}
        return await self._in_thread(check.id, lambda: readers[check.input_key](check))

    async def _in_thread(self, check_id: str, work: Callable[[], Reading]) -> Reading:
        """Run `work` in a thread, unless this check's previous read is still running."""
        future = self._inflight.get(check_id)
        if future is None or future.done():
            future = asyncio.ensure_future(asyncio.to_thread(work))
            self._inflight[check_id] = future
        return await asyncio.shield(future)

    # -- state kept between polls --------------------------------------------------------

    def _kept(self, check: CheckConfig, make: Callable[[], Any]) -> Any:
        key = _state_key(check)
        held = self._state.get(check.id)
        if held is None or held[0] != key:
            self._drop(check.id)
            held = (key, make())
            self._state[check.id] = held
        return held[1]

    def _drop(self, check_id: str) -> None:
        held = self._state.pop(check_id, None)
        if held is not None and isinstance(held[1], _LogState):
            held[1].tail.close()

    # -- file: ---------------------------------------------------------------------------

    def _read_glob(self, check: CheckConfig) -> Reading:
        pattern = check.file or ""
        measure = check.measure or "age"
        try:
            scan = self._kept(check, lambda: GlobScan(pattern, need_mtimes=measure != "count"))
            totals = scan.scan()
        except ScanError as e:
            raise ReadError(str(e)) from None
        now = self.clock.now()
        if measure == "count":
            return Reading(totals.count, server=pattern)
        if measure == "growth":
            window = check.window if check.window is not None else check.poll_every
            return Reading(totals.modified_since(now - window), server=pattern)
        if totals.newest_mtime is None:
            raise ReadError(f"no file matches {pattern}")
        return Reading(round(max(0.0, now - totals.newest_mtime), 3), server=pattern)

    # -- disk: ---------------------------------------------------------------------------

    def _read_disk(self, check: CheckConfig) -> Reading:
        path = os.path.expanduser(check.disk or "")
        try:
            if not os.path.isdir(path):
                what = "is a file, not a directory" if os.path.exists(path) else \
                    "does not exist"
                raise ReadError(f"{path} {what} (disk: takes a directory on the filesystem)")
            fs = os.statvfs(path)
        except OSError as e:
            raise ReadError(f"cannot read {path}: {e.strerror}") from None
        if (check.measure or "free_percent") == "free_bytes":
            # f_bavail: what a non-root writer (a detector) can still use, as df shows
            return Reading(fs.f_bavail * fs.f_frsize, server=path)
        if fs.f_blocks == 0:
            raise ReadError(f"the filesystem of {path} reports no size")
        return Reading(round(100.0 * fs.f_bavail / fs.f_blocks, 3), server=path)

    # -- log: ----------------------------------------------------------------------------

    def _read_log(self, check: CheckConfig) -> Reading:
        state: _LogState = self._kept(check, lambda: _LogState(check))
        now = self.clock.now()
        try:
            lines = state.tail.new_lines()
        except TailError as e:
            state.take(e.lines, now)
            raise ReadError(str(e)) from None
        state.take(lines, now)
        if check.measure == "last":
            return Reading(state.last or "", server=state.tail.path)
        window = check.window if check.window is not None else check.poll_every
        return Reading(state.matches_since(now - window), server=state.tail.path)

    # -- read: ---------------------------------------------------------------------------

    def _read_document(self, check: CheckConfig) -> Reading:
        path = Path(os.path.expanduser(check.read or ""))
        document = _load_document(path)
        if check.json_ is None:
            return Reading(document, server=str(path))
        value = jsonpath.search(check.json_, document)
        if value is None:
            raise ReadError(f"json: '{check.json_}' finds nothing in {path}")
        return Reading(value, server=str(path))


def _state_key(check: CheckConfig) -> tuple:
    """What a check's remembered state depends on: a change starts it afresh."""
    return (check.input_key, check.file, check.log, check.match, check.measure)


def _load_document(path: Path) -> Any:
    try:
        if path.stat().st_size > MAX_DOCUMENT:
            raise ReadError(f"{path} is larger than {MAX_DOCUMENT // 2**20} MiB")
        data = path.read_bytes()
    except FileNotFoundError:
        raise ReadError(f"{path} does not exist") from None
    except IsADirectoryError:
        raise ReadError(f"{path} is a directory, not a file") from None
    except OSError as e:
        raise ReadError(f"cannot read {path}: {e.strerror}") from None
    if path.suffix.lower() in (".yaml", ".yml"):
        return _yaml(path, data)
    try:
        return json.loads(data)
    except UnicodeDecodeError:
        raise ReadError(f"{path} is not text (UTF-8)") from None
    except json.JSONDecodeError as e:
        raise ReadError(f"{path} is not valid JSON: {e.msg} at line {e.lineno} "
                        f"column {e.colno}") from None


def _yaml(path: Path, data: bytes) -> Any:
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    try:
        return YAML(typ="safe", pure=True).load(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise ReadError(f"{path} is not text (UTF-8)") from None
    except YAMLError as e:
        where = getattr(e, "problem_mark", None)
        at = f" at line {where.line + 1} column {where.column + 1}" if where else ""
        problem = getattr(e, "problem", None) or type(e).__name__
        raise ReadError(f"{path} is not valid YAML: {problem}{at}") from None
