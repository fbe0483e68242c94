"""Tail a log file across rotation, reading only the bytes added since the last poll.

Rotation by rename (logrotate's default): the path names a new inode. The old
file is kept open and read to its end first (the writer may have added lines
after our last poll), then the new one from its start. Rotation by copytruncate:
same inode, but the file is now shorter than our offset: read it from the start.
(Lines written between our last poll and the copy are in the copy, not here:
copytruncate loses them for every reader, as logrotate's manual says.)

Lines are bytes until matched: decoded with errors="replace" (a binary line is
still a line), and a line longer than MAX_LINE is cut there, the rest skipped up
to its newline, so one runaway line cannot fill memory.
"""

from __future__ import annotations

import os
import stat
from typing import BinaryIO

MAX_LINE = 64 * 1024
MAX_READ = 16 * 1024 * 1024  # per poll; the rest is read by the next polls
SEED_BYTES = 64 * 1024  # read back at first open, for the last matching line


class TailError(Exception):
    """The log cannot be read; the message says why. `lines`: what was still read
    (the rest of a file rotated away before its successor appeared)."""

    def __init__(self, message: str, lines: list[str] | None = None):
        super().__init__(message)
        self.lines = lines or []


class LogTail:
    """One log file, followed. Not thread-safe: one poll at a time."""

    def __init__(self, path: str):
        self.path = os.path.expanduser(path)
        self._fh: BinaryIO | None = None
        self._identity: tuple[int, int] | None = None  # (st_dev, st_ino) of the open file
        self._offset = 0
        self._partial = b""
        self._skipping = False  # inside a line already cut at MAX_LINE
        self.rotations = 0

    def new_lines(self) -> list[str]:
        """Every complete line added since the last call (none at the first call:
        a tail starts at the end)."""
        st = self._stat()
        if st is None:  # renamed away, the new one not there yet: finish the old one
            lines = self._read_to_end() if self._fh is not None else []
            raise TailError(f"log file {self.path} does not exist", lines)
        identity = (st.st_dev, st.st_ino)
        lines: list[str] = []
        if self._fh is None:
            self._open(start_at_end=self._identity is None)
        elif identity != self._identity:  # rotated by rename
            lines += self._read_to_end()
            self._close()
            self.rotations += 1
            self._open(start_at_end=False)
        elif st.st_size < self._offset:  # truncated in place (copytruncate)
            self._offset, self._partial, self._skipping = 0, b"", False
            self.rotations += 1
        return lines + self._read_to_end()

    def seed(self) -> list[str]:
        """The complete lines of the file's last SEED_BYTES (for `last` at start)."""
        try:
            with open(self.path, "rb") as fh:
                size = os.fstat(fh.fileno()).st_size
                fh.seek(max(0, size - SEED_BYTES))
                data = fh.read(SEED_BYTES)
        except OSError:
            return []
        lines = data.split(b"\n")[1 if size > SEED_BYTES else 0:-1]
        return [_text(line[:MAX_LINE]) for line in lines]

    def close(self) -> None:
        self._close()

    def _stat(self) -> os.stat_result | None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        except OSError as e:
            raise TailError(f"cannot read log file {self.path}: {e.strerror}") from None
        if not _regular(st):
            raise TailError(f"{self.path} is not a regular file")
        return st

    def _open(self, start_at_end: bool) -> None:
        try:
            fh = open(self.path, "rb")  # noqa: SIM115 - kept open across polls
        except FileNotFoundError:
            raise TailError(f"log file {self.path} does not exist") from None
        except OSError as e:
            raise TailError(f"cannot read log file {self.path}: {e.strerror}") from None
        st = os.fstat(fh.fileno())
        self._fh, self._identity = fh, (st.st_dev, st.st_ino)
        self._offset = st.st_size if start_at_end else 0
        self._partial, self._skipping = b"", False

    def _close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def _read_to_end(self) -> list[str]:
        assert self._fh is not None
        self._fh.seek(self._offset)
        data = self._fh.read(MAX_READ)
        self._offset += len(data)
        return self._split(data)

    def _split(self, data: bytes) -> list[str]:
        if self._skipping:  # the rest of a line already cut: drop it up to its newline
            end = data.find(b"\n")
            if end < 0:
                return []
            data, self._skipping = data[end + 1:], False
        chunks = (self._partial + data).split(b"\n")
        self._partial = chunks.pop()
        lines = [_text(c[:MAX_LINE]) for c in chunks]
        if len(self._partial) > MAX_LINE:  # a runaway line: keep its start, skip the rest
            lines.append(_text(self._partial[:MAX_LINE]))
            self._partial, self._skipping = b"", True
        return lines


def _text(line: bytes) -> str:
    return line.rstrip(b"\r").decode("utf-8", errors="replace")


def _regular(st: os.stat_result) -> bool:
    return stat.S_ISREG(st.st_mode)
