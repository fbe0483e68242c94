"""`GET /api/events`: live updates by server-sent events.

One hub per app reads the store once a second while anyone listens — new
transitions and new audit entries (acks, silences, mode changes…) — and fans
them out to every listener's queue. A listener gets `event: transition` /
`event: audit` with the row as JSON, and a comment line every 15 s so proxies
keep the connection open. A slow listener whose queue is full is dropped (its
browser reconnects, as EventSource does, and re-reads the state); it never
holds up the others. The store, not the engine's memory, is the source: what a
listener sees is what `status` and `history` answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Callable

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import StreamingResponse

from ..api import service
from ..store import Store

log = logging.getLogger("beamwatch.web")

POLL = 1.0  # seconds between reads of the store while someone listens
KEEPALIVE = 15.0
QUEUE = 1000  # events a listener may fall behind before it is dropped
LISTENERS_MAX = 200


class EventHub:
    def __init__(self, store: Store, clock: Callable[[], float] = time.time):
        self.store = store
        self.clock = clock
        self.listeners: set[asyncio.Queue] = set()
        self._task: asyncio.Task | None = None
        self._since = clock()
        self._seen: set[tuple[str, int]] = set()

    def subscribe(self) -> asyncio.Queue:
        if len(self.listeners) >= LISTENERS_MAX:
            raise HTTPException(503, f"{LISTENERS_MAX} listeners already; try again later")
        queue: asyncio.Queue = asyncio.Queue(QUEUE)
        self.listeners.add(queue)
        if self._task is None or self._task.done():
            self._since = self.clock()
            self._task = asyncio.ensure_future(self._run())
        return queue

    def unsubscribe(self, queue: asyncio.Queue) -> None:
        self.listeners.discard(queue)

    async def _run(self) -> None:
        failing = False
        while self.listeners:
            await asyncio.sleep(POLL)
            try:
                rows = await asyncio.to_thread(service.history, self.store, self._since - 5)
            except Exception as e:  # the store is away: say so once, go on
                if not failing:
                    log.warning("live updates paused, the store does not answer: %s", e)
                failing = True
                continue
            failing = False
            self._publish(rows)

    def _publish(self, rows: list[dict]) -> None:
        fresh = [r for r in rows if (r["kind"], r["id"]) not in self._seen]
        for r in fresh:
            self._seen.add((r["kind"], r["id"]))
            self._since = max(self._since, r["time"])
        if len(self._seen) > 50_000:  # old ids can no longer come back: forget them
            self._seen = {(r["kind"], r["id"]) for r in rows}
        for r in fresh:
            text = f"event: {r['kind']}\ndata: {json.dumps(r, default=str)}\n\n"
            for queue in list(self.listeners):
                try:
                    queue.put_nowait(text)
                except asyncio.QueueFull:
                    self.listeners.discard(queue)  # dropped: make room to say so
                    with contextlib.suppress(asyncio.QueueEmpty, asyncio.QueueFull):
                        queue.get_nowait()
                        queue.put_nowait(None)


def router(hub: EventHub) -> APIRouter:
    routes = APIRouter()

    @routes.get("/api/events", summary="Live updates (server-sent events)",
                response_class=StreamingResponse, tags=["beamline"],
                responses={200: {"content": {"text/event-stream": {}}},
                           503: {"description": "too many listeners"}})
    async def events(request: Request) -> StreamingResponse:
        queue = hub.subscribe()

        async def stream() -> AsyncIterator[str]:
            try:
                yield "retry: 3000\n: connected\n\n"
                while not await request.is_disconnected():
                    try:
                        async with asyncio.timeout(KEEPALIVE):
                            item = await queue.get()
                    except TimeoutError:
                        yield ": keepalive\n\n"
                        continue
                    if item is None:  # dropped for falling behind
                        return
                    yield item
            finally:
                hub.unsubscribe(queue)

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store",
                                          "X-Accel-Buffering": "no"})

    return routes
