"""Channel Access monitors straight on libca: the hot path of the CA source.

aioca's `camonitor` costs a task, a future and a `ca_flush_io` per PV to open,
and per update an augmented numpy/float object built on libca's thread and
one callback queued per update on the loop. At 10k PVs x 2 Hz that alone was
1.3x the CPU of a bare libca client. Here (decision 0013):

- libca's thread does the least it can per update: copy the raw DBR bytes
  (`string_at`) and append `(handle, type, count, bytes)` to a deque; the
  loop is woken once per burst, not once per update;
- the loop decodes in bulk (`struct`), a chunk at a time, so it stays
  responsive under overload; with `all_updates=False` a chunk that is full
  keeps only the newest value of each PV (the rest are counted as merged);
- channels are created in one pass with one flush; each subscription is made
  on the channel's first connection, with the DBR_TIME type of its native
  type (doubles and floats as float, integers as int, enums and strings as
  str, arrays as tuples, char arrays as text); libca keeps it across
  disconnects and sends the current value on every reconnection.

It runs in aioca's (preemptive) CA context, attached to the loop's thread, so
`caget`/`caput` through aioca keep working in the same process.
"""

from __future__ import annotations

import asyncio
import atexit
import ctypes
import logging
import struct
from collections import deque
from collections.abc import Callable
from typing import Any

from epicscorelibs.ca import cadef

log = logging.getLogger("beamwatch.sources.ca")

_libca = cadef.libca
EPICS_EPOCH = 631152000  # 1990-01-01 in POSIX seconds
ECA_NORMAL = cadef.ECA_NORMAL
DBE_MASK = cadef.DBE_VALUE | cadef.DBE_ALARM

# Kinds of event on the hand-off (the second item of each tuple; DBR types are >= 0).
CONNECTED, DISCONNECTED, FAILED = -1, -2, -3

# Native field type -> DBR_TIME type asked for (enums as their strings).
DBF_STRING, DBF_SHORT, DBF_FLOAT, DBF_ENUM, DBF_CHAR, DBF_LONG, DBF_DOUBLE = range(7)
DBR_TIME_STRING, DBR_TIME_CHAR, DBR_TIME_LONG, DBR_TIME_DOUBLE = 14, 18, 19, 20
_TIME_TYPE = {DBF_STRING: DBR_TIME_STRING, DBF_ENUM: DBR_TIME_STRING,
              DBF_SHORT: DBR_TIME_LONG, DBF_LONG: DBR_TIME_LONG,
              DBF_FLOAT: DBR_TIME_DOUBLE, DBF_DOUBLE: DBR_TIME_DOUBLE,
              DBF_CHAR: DBR_TIME_LONG}  # a char array: DBR_TIME_CHAR (text)

# DBR type -> (offset of the value in the struct, bytes per element, struct code).
_LAYOUT = {DBR_TIME_STRING: (12, 40, "40s"), DBR_TIME_CHAR: (15, 1, "B"),
           DBR_TIME_LONG: (12, 4, "i"), DBR_TIME_DOUBLE: (16, 8, "d")}
_HEAD = struct.Struct("=hhII")  # status, severity, seconds and nanoseconds past 1990
_SCALAR = {t: struct.Struct(f"=hhII{off - 12}x{code}").unpack_from
           for t, (off, _, code) in _LAYOUT.items()}


class _EventArgs(ctypes.Structure):
    """libca's event_handler_args, with `usr` as a plain integer (our handle)."""

    _fields_ = [("usr", ctypes.c_void_p), ("chid", ctypes.c_void_p),
                ("type", ctypes.c_long), ("count", ctypes.c_long),
                ("dbr", ctypes.c_void_p), ("status", ctypes.c_int)]


class _ConnArgs(ctypes.Structure):
    _fields_ = [("chid", ctypes.c_void_p), ("op", ctypes.c_long)]


_EVENT = ctypes.CFUNCTYPE(None, _EventArgs)
_CONNECTION = ctypes.CFUNCTYPE(None, _ConnArgs)


def _function(name: str, argtypes: list, restype: Any = ctypes.c_int) -> Any:
    # libca[name], not libca.name: a fresh function object, so that our argtypes do
    # not change those aioca set on its own (ctypes caches libca.name)
    f = _libca[name]
    f.argtypes, f.restype = argtypes, restype
    return f


_create_channel = _function("ca_create_channel", [
    ctypes.c_char_p, _CONNECTION, ctypes.c_void_p, ctypes.c_int,
    ctypes.POINTER(ctypes.c_void_p)])
_clear_channel = _function("ca_clear_channel", [ctypes.c_void_p])
_create_subscription = _function("ca_create_subscription", [
    ctypes.c_long, ctypes.c_ulong, ctypes.c_void_p, ctypes.c_long, _EVENT, ctypes.c_void_p,
    ctypes.POINTER(ctypes.c_void_p)])
_puser = _function("ca_puser", [ctypes.c_void_p], ctypes.c_void_p)
_field_type = _function("ca_field_type", [ctypes.c_void_p], ctypes.c_short)
_element_count = _function("ca_element_count", [ctypes.c_void_p], ctypes.c_ulong)
_host_name = _function("ca_host_name", [ctypes.c_void_p], ctypes.c_char_p)
_message = _function("ca_message", [ctypes.c_long], ctypes.c_char_p)
_flush_io = _function("ca_flush_io", [])


def message(status: int) -> str:
    """libca's text for an ECA status code."""
    try:
        return (_message(status) or b"").decode("ascii", "replace") or f"CA status {status}"
    except Exception:  # pragma: no cover - libca always has a text
        return f"CA status {status}"


def decode(dbr_type: int, count: int, raw: bytes) -> tuple[Any, float, int, int]:
    """(value, timestamp, severity, status) from a DBR_TIME struct's bytes."""
    if count == 1 and dbr_type != DBR_TIME_CHAR:
        status, severity, secs, nsecs, value = _SCALAR[dbr_type](raw)
        if dbr_type == DBR_TIME_STRING:
            value = _text(value)
    else:
        status, severity, secs, nsecs = _HEAD.unpack_from(raw)
        offset, size, code = _LAYOUT[dbr_type]
        if dbr_type == DBR_TIME_CHAR:
            value = _text(raw[offset:offset + count])
        elif dbr_type == DBR_TIME_STRING:
            value = tuple(_text(raw[offset + i * size:offset + (i + 1) * size])
                          for i in range(count))
        else:
            value = struct.unpack_from(f"={count}{code}", raw, offset)
    return value, secs + EPICS_EPOCH + nsecs * 1e-9, severity, status


def _text(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("utf-8", "replace")


class Monitors:
    """Channels and their subscriptions, by integer handle. `deliver(events)` gets,
    on the loop's thread, lists of `(handle, kind, count, data)`: kind is a DBR_TIME
    type (data: its bytes), CONNECTED, DISCONNECTED or FAILED (count: the ECA code).
    Handles are never reused: events of a closed channel are dropped."""

    # events handled per loop callback: the loop stays responsive. At 100k first values
    # (each judged in full) 20k took a second, and with a slice of channels opened in the
    # same loop turn the lease's renewal waited 5 s for its turn
    CHUNK = 5_000
    # falling behind: each PV's newest value of this many queued events (at 10k PVs a
    # chunk rarely holds a PV twice; merging over it alone would keep the whole backlog)
    MERGE = 20_000
    POLL = 0.005  # seconds between looks at the hand-off while events keep coming

    def __init__(self, loop: asyncio.AbstractEventLoop,
                 deliver: Callable[[list[tuple]], None], all_updates: bool = False):
        self._loop = loop
        self._deliver = deliver
        self.all_updates = all_updates
        self._events: deque[tuple] = deque()
        self._woken = False
        self._next = 1
        self._chids: dict[int, int] = {}  # handle -> chid
        self._subscribed: set[int] = set()
        self.merged = 0  # updates replaced by a newer one of the same PV (overload)
        self._on_event = _EVENT(self._event)  # kept: libca holds bare pointers to them
        self._on_connection = _CONNECTION(self._connection)
        self._flush_needed = False
        _opened(self)

    # --- the loop's side ---------------------------------------------------------------

    def open(self, name: str) -> int:
        """Create the channel of `name` (the subscription follows its connection)."""
        handle, self._next = self._next, self._next + 1
        chid = ctypes.c_void_p()
        status = _create_channel(name.encode(), self._on_connection, handle, 0,
                                 ctypes.byref(chid))
        if status != ECA_NORMAL:
            raise OSError(f"ca_create_channel: {message(status)}")
        self._chids[handle] = chid.value
        self._flush_later()
        return handle

    def close(self, handle: int) -> None:
        chid = self._chids.pop(handle, None)
        self._subscribed.discard(handle)
        if chid is not None:
            _clear_channel(chid)  # its subscription goes with it
            self._flush_later()

    def close_all(self) -> None:
        for handle in list(self._chids):
            self.close(handle)
        self._flush_now()

    def shut(self) -> None:
        """Every channel closed; this object is done."""
        self.close_all()
        if self in _open_monitors:
            _open_monitors.remove(self)

    @property
    def pending(self) -> int:
        """Events from libca not handed to the loop yet."""
        return len(self._events)

    def host(self, handle: int) -> str | None:
        chid = self._chids.get(handle)
        if chid is None:
            return None
        try:
            return (_host_name(chid) or b"").decode("ascii", "replace") or None
        except Exception:
            return None

    def _flush_later(self) -> None:
        # one ca_flush_io for everything opened in this loop iteration
        if not self._flush_needed:
            self._flush_needed = True
            self._loop.call_soon(self._flush_now)

    def _flush_now(self) -> None:
        self._flush_needed = False
        _flush_io()

    def _drain(self) -> None:
        events, take = self._events, self._events.popleft
        self._woken = False  # before looking: an event put after this wakes us again
        if not events:
            return  # idle: back to a wake-up from libca's thread on the next event
        # busy: look again after POLL instead of being woken per burst (a wake-up is a
        # write and a read on the loop's self-pipe, from libca's thread)
        self._woken = True
        if len(events) > self.CHUNK and not self.all_updates:
            # behind: merge a wider window, hand over a chunk
            chunk = self._newest_only([take() for _ in range(min(len(events), self.MERGE))])
            if len(chunk) > self.CHUNK:  # the rest goes first next time, in order
                events.extendleft(reversed(chunk[self.CHUNK:]))
                del chunk[self.CHUNK:]
        else:
            chunk = [take() for _ in range(min(len(events), self.CHUNK))]
        if events:  # the rest as soon as the loop had its turn
            self._loop.call_soon(self._drain)
        else:
            self._loop.call_later(self.POLL, self._drain)
        connected = [e[0] for e in chunk if e[1] == CONNECTED]
        for handle in connected:
            self._subscribe(handle)
        self._deliver(chunk)

    def _newest_only(self, chunk: list[tuple]) -> list[tuple]:
        """Falling behind: of each PV's values in this chunk only the newest is kept
        (connection events all are, in order)."""
        seen: set[int] = set()
        kept = []
        for e in reversed(chunk):
            if e[1] >= 0:
                if e[0] in seen:
                    continue
                seen.add(e[0])
            kept.append(e)
        self.merged += len(chunk) - len(kept)
        kept.reverse()
        return kept

    def _subscribe(self, handle: int) -> None:
        """On a channel's first connection: one subscription of its native type."""
        chid = self._chids.get(handle)
        if chid is None or handle in self._subscribed:
            return
        try:
            native, count = _field_type(chid), _element_count(chid)
        except Exception:  # pragma: no cover - ctypes' own errors
            native, count = -1, 0
        dbr_type = DBR_TIME_CHAR if native == DBF_CHAR and count > 1 \
            else _TIME_TYPE.get(native)
        if dbr_type is None:  # TYPENOTCONN: it went away again; the next connection retries
            return
        evid = ctypes.c_void_p()
        status = _create_subscription(dbr_type, 1 if count <= 1 else 0, chid, DBE_MASK,
                                      self._on_event, handle, ctypes.byref(evid))
        if status != ECA_NORMAL:
            self._events.append((handle, FAILED, status, None))
            self._wake()
            return
        self._subscribed.add(handle)
        self._flush_later()

    # --- libca's threads: as little as possible, never raise -------------------------------

    def _event(self, args: _EventArgs) -> None:
        try:
            handle, dbr_type, count = args.usr, args.type, args.count
            if args.status == ECA_NORMAL and args.dbr:
                offset, size, _ = _LAYOUT[dbr_type]
                self._events.append((handle, dbr_type, count,
                                     ctypes.string_at(args.dbr, offset + size * count)))
            else:
                self._events.append((handle, FAILED, args.status, None))
            if not self._woken:
                self._wake()
        except Exception:  # pragma: no cover - a closed loop at exit
            pass

    def _connection(self, args: _ConnArgs) -> None:
        try:
            handle = _puser(args.chid)
            up = args.op == cadef.CA_OP_CONN_UP
            self._events.append((handle, CONNECTED if up else DISCONNECTED, 0, None))
            if not self._woken:
                self._wake()
        except Exception:  # pragma: no cover - a closed loop at exit
            pass

    def _wake(self) -> None:
        self._woken = True
        self._loop.call_soon_threadsafe(self._drain)


_open_monitors: list[Monitors] = []


def _opened(monitors: Monitors) -> None:
    if not _open_monitors and not _registered:
        # registered after aioca's own teardown (the context exists by now), so it
        # runs before it: no callback of ours may run into a destroyed context or
        # a finalising interpreter
        atexit.register(_close_at_exit)
        _registered.append(True)
    _open_monitors.append(monitors)


_registered: list[bool] = []


def _close_at_exit() -> None:  # pragma: no cover - exit
    for monitors in list(_open_monitors):
        try:
            monitors.shut()
        except Exception:
            pass
