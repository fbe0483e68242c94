"""Incremental glob scans: a data tree of a million files is not walked every poll.

A glob like /data/2026/*/*.cbf is split into a fixed root (/data/2026) and one
pattern per directory level (`*`, `*.cbf`). Each directory the scan visits is
remembered with its mtime and what was found in it: the matching subdirectories,
or, at the last level, how many files match and their modification times.
A directory's mtime changes when an entry is added, removed or renamed in it, so
a directory whose mtime has not changed is not listed again: a steady-state poll
costs one stat() per directory, not one per file.

Two gaps, both closed: a directory changed within the same tick as our listing
would keep its mtime, so a directory modified in the last RACY_NS is listed again
next poll ("racy" entries, as git does for its index); and writing into an
existing file does not touch its directory, so the newest file is stat()ed again
every poll (the file a detector is still writing is the one whose age matters).
"""

from __future__ import annotations

import bisect
import os
import re
import time
from array import array
from dataclasses import dataclass, field
from fnmatch import translate
from pathlib import Path

RACY_NS = 2_000_000_000  # a directory changed this recently is listed again next poll
WILDCARDS = re.compile(r"[*?\[]")


class ScanError(Exception):
    """The glob's root cannot be read; the message says why."""


@dataclass(slots=True)
class _Listing:
    """One directory as last listed."""

    mtime_ns: int
    settled: bool  # False: changed too recently to trust the mtime (RACY_NS)
    subdirs: list[str] = field(default_factory=list)  # intermediate levels
    count: int = 0  # last level: matching files
    mtimes: array = field(default_factory=lambda: array("d"))  # last level, sorted
    newest: str | None = None  # last level: the newest file's name


def split_glob(pattern: str) -> tuple[Path, list[str]]:
    """'/data/2026/*/*.cbf' -> (Path('/data/2026'), ['*', '*.cbf'])."""
    path = Path(os.path.expanduser(pattern))
    parts = path.parts
    first_wild = next((i for i, p in enumerate(parts) if WILDCARDS.search(p)), len(parts) - 1)
    if "**" in pattern:
        raise ScanError("'**' is not supported: give one wildcard per directory level "
                        "(e.g. /data/*/*/*.cbf)")
    root = Path(*parts[:first_wild]) if first_wild else Path(".")
    return root, list(parts[first_wild:])


def _matcher(component: str):
    regex = re.compile(translate(component))
    hidden_ok = component.startswith(".")  # like glob: '*' does not match '.partial' files
    return lambda name: (hidden_ok or not name.startswith(".")) and regex.match(name)


class GlobScan:
    """The files matching one glob, rescanned incrementally (see the module doc).
    Not thread-safe: one scan at a time (FileSource runs one per check)."""

    def __init__(self, pattern: str, need_mtimes: bool = True):
        self.pattern = pattern
        self.root, components = split_glob(pattern)
        self.matchers = [_matcher(c) for c in components]
        self.need_mtimes = need_mtimes
        self._cache: dict[str, _Listing] = {}

    def scan(self) -> GlobTotals:
        self._check_root()
        now_ns = _now_ns()
        last = len(self.matchers) - 1
        seen: set[str] = set()
        listed = 0
        leaves: list[tuple[str, _Listing]] = []
        stack = [(str(self.root), 0)]
        while stack:
            directory, level = stack.pop()
            listing, fresh = self._listing(directory, level == last, level, now_ns)
            if listing is None:
                continue  # removed while we scanned
            seen.add(directory)
            listed += fresh
            if level == last:
                leaves.append((directory, listing))
            else:
                stack.extend((os.path.join(directory, n), level + 1) for n in listing.subdirs)
        for gone in self._cache.keys() - seen:
            del self._cache[gone]
        totals = GlobTotals(leaves, listed, len(seen))
        self._refresh_newest(totals)
        return totals

    def _check_root(self) -> None:
        try:
            if not self.root.is_dir():
                what = "is not a directory" if self.root.exists() else "does not exist"
                raise ScanError(f"{self.root} {what} (from {self.pattern})")
        except OSError as e:
            raise ScanError(f"cannot read {self.root}: {e.strerror}") from None

    def _listing(self, directory: str, leaf: bool, level: int,
                 now_ns: int) -> tuple[_Listing | None, int]:
        """The directory's listing, from the cache when its mtime says nothing changed."""
        try:
            mtime_ns = os.stat(directory).st_mtime_ns
        except FileNotFoundError:
            return None, 0
        except OSError as e:
            raise ScanError(f"cannot read {directory}: {e.strerror}") from None
        cached = self._cache.get(directory)
        if cached is not None and cached.settled and cached.mtime_ns == mtime_ns:
            return cached, 0
        try:
            listing = self._read_dir(directory, leaf, self.matchers[level])
        except FileNotFoundError:
            return None, 0
        except OSError as e:
            raise ScanError(f"cannot read {directory}: {e.strerror}") from None
        listing.mtime_ns = mtime_ns
        listing.settled = now_ns - mtime_ns > RACY_NS
        self._cache[directory] = listing
        return listing, 1

    def _read_dir(self, directory: str, leaf: bool, matches) -> _Listing:
        listing = _Listing(0, False)
        times: list[float] = []
        newest = (-1.0, None)
        with os.scandir(directory) as entries:
            for entry in entries:
                if not matches(entry.name):
                    continue
                try:
                    if not leaf:
                        if entry.is_dir():
                            listing.subdirs.append(entry.name)
                        continue
                    if not entry.is_file():
                        continue
                    listing.count += 1
                    if self.need_mtimes:
                        mtime = entry.stat().st_mtime
                        times.append(mtime)
                        newest = max(newest, (mtime, entry.name))
                except FileNotFoundError:  # deleted between listing and stat
                    continue
        times.sort()
        listing.mtimes = array("d", times)
        listing.newest = newest[1]
        return listing

    def _refresh_newest(self, totals: GlobTotals) -> None:
        """Writing into a file leaves its directory alone: stat the newest file again."""
        if not self.need_mtimes or totals.newest_path is None:
            return
        try:
            mtime = os.stat(totals.newest_path).st_mtime
        except OSError:  # gone: its directory changed too, and is listed next poll
            return
        if mtime > (totals.newest_mtime or 0.0):
            totals.newest_mtime = mtime


class GlobTotals:
    """What a scan found, over every leaf directory."""

    def __init__(self, leaves: list[tuple[str, _Listing]], listed: int, seen: int):
        self.leaves = leaves
        self.dirs_listed = listed
        self.dirs_seen = seen
        self.count = sum(listing.count for _, listing in leaves)
        self.newest_path: str | None = None
        self.newest_mtime: float | None = None
        for directory, listing in leaves:
            if listing.newest is not None and listing.mtimes:
                mtime = listing.mtimes[-1]
                if self.newest_mtime is None or mtime > self.newest_mtime:
                    self.newest_mtime = mtime
                    self.newest_path = os.path.join(directory, listing.newest)

    def modified_since(self, since: float) -> int:
        """How many matching files were modified after `since` (epoch seconds)."""
        return sum(len(listing.mtimes) - bisect.bisect_right(listing.mtimes, since)
                   for _, listing in self.leaves)


def _now_ns() -> int:
    return time.time_ns()  # the filesystem's clock, not beamwatch's (which tests fake)
