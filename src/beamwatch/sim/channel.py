"""The pipe between `SimBeamline` and its supervisor process: JSON, one object a line.

Supervisor -> parent, on its stdout:
    {"event": "ready", "pvs": 383, "addr_list": "...", "unsettled": [...], ...}
    {"event": "failed", "message": "...", "kind": "PortInUse"}
    {"event": "ioc", "ioc": "endstation", "state": "down" | "up" | "crashed"}
    {"id": 3, "ok": true, "result": ...}  or  {"id": 3, "ok": false, "error": "...", "kind": "..."}
Parent -> supervisor, on its stdin:
    {"id": 3, "op": "fault" | "read" | "status" | "ping" | "stop", ...arguments}

End of file on the supervisor's stdin means "stop": a parent that dies takes
the sim with it. The parent side is synchronous (a reader thread matches
replies to requests), so tests and scripts can use the sim without an event
loop of their own.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import queue
import subprocess
import sys
import threading
import time
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import IO, TYPE_CHECKING, Any

from .errors import SimError, from_kind

if TYPE_CHECKING:
    from .supervisor import Supervisor

log = logging.getLogger("beamwatch.sim")


# --- supervisor side --------------------------------------------------------------------


class StdioServer:
    def __init__(self, stop: asyncio.Event, out: IO[str] | None = None,
                 inp: IO[str] | None = None):
        self.stop = stop
        self.out = out or sys.stdout
        self.inp = inp or sys.stdin

    def send(self, message: dict[str, Any]) -> None:
        self.out.write(json.dumps(message) + "\n")
        self.out.flush()

    async def serve(self, sup: Supervisor) -> None:
        """Answer requests until a stop request, EOF on stdin, or `stop` is set."""
        loop = asyncio.get_running_loop()
        lines: asyncio.Queue[str | None] = asyncio.Queue()

        def reader() -> None:
            for line in self.inp:
                loop.call_soon_threadsafe(lines.put_nowait, line)
            loop.call_soon_threadsafe(lines.put_nowait, None)

        threading.Thread(target=reader, name="sim-stdin", daemon=True).start()
        stopped = asyncio.ensure_future(self.stop.wait())
        tasks: set[asyncio.Task] = set()
        try:
            while True:
                got = asyncio.ensure_future(lines.get())
                await asyncio.wait({got, stopped}, return_when=asyncio.FIRST_COMPLETED)
                if not got.done():
                    got.cancel()
                    return
                line = got.result()
                if line is None:
                    return
                if line.strip():
                    task = asyncio.ensure_future(self._answer(sup, line))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
        finally:
            stopped.cancel()
            for task in tasks:
                task.cancel()

    async def _answer(self, sup: Supervisor, line: str) -> None:
        request_id = None
        try:
            request = json.loads(line)
            request_id = request.get("id")
            result = await self._do(sup, request)
            self.send({"id": request_id, "ok": True, "result": result})
        except SimError as e:
            self.send({"id": request_id, "ok": False, "error": str(e), "kind": type(e).__name__})
        except Exception as e:  # a bug must reach the caller as an answer, not hang it
            log.exception("request failed: %s", line.strip())
            self.send({"id": request_id, "ok": False, "error": f"{type(e).__name__}: {e}"})

    async def _do(self, sup: Supervisor, request: dict[str, Any]) -> Any:
        op = request.get("op")
        if op == "ping":
            return "pong"
        if op == "read":
            readings = await sup.read(list(request["pvs"]), float(request.get("ca_timeout", 2.0)))
            return {name: r.to_json() for name, r in readings.items()}
        if op == "fault":
            return await sup.fault(request["name"], request.get("ioc"),
                                   rate=request.get("rate"))
        if op == "status":
            return sup.status()
        if op == "stop":
            self.stop.set()
            return "stopping"
        raise SimError(f"unknown request '{op}'")


# --- parent side ------------------------------------------------------------------------


class SupervisorLink:
    """Talks to a supervisor process started with stdin and stdout as pipes (text)."""

    def __init__(self, proc: subprocess.Popen[str]):
        if proc.stdin is None or proc.stdout is None:
            raise ValueError("the supervisor needs stdin and stdout pipes")
        self.proc = proc
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self._pending: dict[int, Future] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._closed = False
        self._reader = threading.Thread(target=self._read, name="sim-link", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                message = json.loads(line)
            except ValueError:
                log.warning("sim supervisor said: %s", line.rstrip())
                continue
            if "id" in message and "event" not in message:
                with self._lock:
                    future = self._pending.pop(message["id"], None)
                if future is None:
                    continue
                if message.get("ok"):
                    future.set_result(message.get("result"))
                else:
                    future.set_exception(from_kind(message.get("kind"), message.get("error", "?")))
            else:
                if message.get("event") == "ioc":
                    log.info("sim: IOC %s %s", message.get("ioc"), message.get("state"))
                self.events.put(message)
        with self._lock:
            self._closed = True
            pending, self._pending = self._pending, {}
        for future in pending.values():
            future.set_exception(SimError("the sim supervisor exited"))
        self.events.put({"event": "exit"})

    def request(self, op: str, timeout: float = 30.0, **args: Any) -> Any:
        future: Future = Future()
        with self._lock:
            if self._closed:
                raise SimError("the sim supervisor is not running")
            request_id = next(self._ids)
            self._pending[request_id] = future
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.write(json.dumps({"id": request_id, "op": op, **args}) + "\n")
                self.proc.stdin.flush()
            except (BrokenPipeError, ValueError, OSError):
                self._pending.pop(request_id, None)
                raise SimError("the sim supervisor is not running") from None
        try:
            return future.result(timeout)
        except FutureTimeout:
            with self._lock:
                self._pending.pop(request_id, None)
            raise SimError(f"the sim supervisor did not answer '{op}' in {timeout:.0f}s") from None

    def wait_event(self, names: set[str], timeout: float) -> dict[str, Any] | None:
        """The next event whose name is in `names` (or "exit"), or None on timeout."""
        deadline = time.monotonic() + timeout
        try:
            while True:
                event = self.events.get(timeout=max(0.0, deadline - time.monotonic()))
                if event.get("event") in names or event.get("event") == "exit":
                    return event
        except queue.Empty:
            return None

    def close(self) -> None:
        """End of file on the supervisor's stdin: it stops its IOCs and exits."""
        if self.proc.stdin is not None:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
