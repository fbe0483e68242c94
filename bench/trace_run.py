"""`beamwatch run` with a timestamp at every stage of a fault's way to the webhook.

    python bench/trace_run.py TRACE_FILE run -c CONFIG

Used by `bench/latency.py --trace`. It wraps, from outside and without changing
beamwatch, the functions each stage goes through, and writes one JSON line per
event to TRACE_FILE when the process exits:

    libca      a monitor update reaches Python on libca's thread (the hand-off
               of sources/libca.py); `woke`: it asked the loop for a wake-up
    loop       the update is handled on the asyncio loop (CaSource._on_events)
    engine     the batch reaches Engine.on_samples
    transition a check changed state (Engine._queue)
    committed  the transition and its notification are stored (worker woken)
    claimed    the outbox worker claimed rows
    send       the webhook notifier starts the HTTP request
    http       httpx's trace events (connect_tcp, send_request_headers...)

Times are time.time(), the clock the benchmark's caput and webhook use. Only PVs
whose name starts with $TRACE_PREFIX (default "LAT:X", the fault PVs) are traced
per update, so 20k background updates/s cost little more than a string test each.
"""

from __future__ import annotations

import atexit
import json
import os
import sys
import time
from typing import Any

EVENTS: list[tuple] = []
PREFIX = os.environ.get("TRACE_PREFIX", "LAT:X")
_clock = time.time
_record = EVENTS.append


def _wrap(owner: Any, name: str, before: Any) -> None:
    """owner.name(*a) now calls before(*a) first (before records an event)."""
    original = getattr(owner, name)

    def traced(*args: Any, **kwargs: Any) -> Any:
        before(*args)
        return original(*args, **kwargs)

    setattr(owner, name, traced)


def _trace_monitors() -> None:
    """beamwatch's libca layer (sources/libca.py): an update on libca's thread (`woke`:
    it asked the loop for a wake-up), then the same update handled on the loop."""
    from beamwatch.sources import libca
    from beamwatch.sources.ca import CaSource

    names: dict[int, str] = {}  # handle -> traced PV
    original_open = libca.Monitors.open

    def open_(self: Any, name: str) -> int:
        handle = original_open(self, name)
        if name.startswith(PREFIX):
            names[handle] = name
        return handle

    libca.Monitors.open = open_  # type: ignore[method-assign]

    def event(self: Any, args: Any) -> None:  # before Monitors() binds it for libca
        pv = names.get(args.usr)
        if pv is not None:
            _record(("libca", _clock(), pv, not self._woken))

    _wrap(libca.Monitors, "_event", event)

    def on_events(self: Any, events: list) -> None:
        for handle, kind, *_ in events:
            pv = names.get(handle)
            if pv is not None and kind >= 0:
                _record(("loop", _clock(), pv))

    _wrap(CaSource, "_on_events", on_events)


def _trace_pipeline() -> None:
    from beamwatch.engine.engine import Engine
    from beamwatch.notify.webhook import WebhookNotifier
    from beamwatch.notify.worker import OutboxWorker

    def on_samples(self: Any, batch: list, *args: Any) -> None:
        faults = [s.address for s in batch if s.address.startswith(PREFIX)]
        if faults:
            _record(("engine", _clock(), faults))

    _wrap(Engine, "on_samples", on_samples)
    _wrap(Engine, "_queue", lambda self, rt, transitions: _record(
        ("transition", _clock(), rt.check.id)))
    _wrap(OutboxWorker, "wake", lambda self: _record(("committed", _clock())))

    original_claim = None

    def claim_traced(self: Any, *args: Any) -> Any:
        rows = original_claim(self, *args)
        if rows:
            _record(("claimed", _clock(), [r.check_id for r in rows]))
        return rows

    from beamwatch.store.outbox import Outbox

    original_claim = Outbox.claim
    Outbox.claim = claim_traced  # type: ignore[method-assign]
    _wrap(WebhookNotifier, "_deliver", lambda self, message: _record(
        ("send", _clock(), list(message.check_ids), message.kind)))


def _trace_http() -> None:
    """httpx's own trace hook: TCP connect, request sent, response headers."""
    import httpx

    async def hook(name: str, info: dict) -> None:
        if name.endswith((".started", ".complete")):
            _record(("http", _clock(), name))

    def send(self: Any, request: Any, **kwargs: Any) -> None:
        request.extensions.setdefault("trace", hook)

    _wrap(httpx.AsyncClient, "send", send)


def _dump(path: str) -> None:
    with open(path, "w") as f:
        for event in list(EVENTS):
            f.write(json.dumps(event) + "\n")


def main() -> None:
    path = sys.argv[1]
    _trace_monitors()
    _trace_pipeline()
    _trace_http()
    atexit.register(_dump, path)
    sys.argv = ["beamwatch", *sys.argv[2:]]
    from beamwatch.cli import main as cli_main

    cli_main()


if __name__ == "__main__":
    main()
