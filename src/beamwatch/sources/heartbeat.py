"""Heartbeats in: something outside (a cron job, the data-collection queue) POSTs to
`/api/heartbeat/{check id}` at least every `heartbeat:` period; the check alarms
when it stops.

The value of a heartbeat check is the age of its last beat in seconds. The source
hands the engine that age once a second, and a beat the moment it arrives (age 0),
so the ordinary threshold machinery judges it: `heartbeat: 5m` implies
`above: {major: 300}` (config/schema.py), and `for:`, `modes:`, `depends_on` and
silences apply as to any check.

Before the first beat after start-up the age counts from the start: a restart, or
a new check, gets one full period before it can alarm. The last beat of each check
is taken back from the store's latest values at start (`restore`) when it is
still within its period, or when the check was already alarming, so a restart
neither delays a due alarm nor clears one that is up.

The web front end calls `receive`; the engine never waits for it."""

from __future__ import annotations

import asyncio
import enum
import hmac
import logging
from collections.abc import Iterable

from ..clock import Clock, SystemClock
from ..config.schema import Config
from ..model import Sample
from ..timefmt import format_duration
from .base import Sink
from .internal import InternalSample

log = logging.getLogger("beamwatch.sources")

HEARTBEAT_SOURCE = "heartbeat"
AGE_EVERY = 1.0  # seconds between age samples: the resolution of a heartbeat alarm
NOTE_MAX = 200  # characters of a beat's message shown in status and pages


class Beat(enum.Enum):
    """What became of one incoming beat."""

    ACCEPTED = "accepted"
    UNKNOWN = "unknown check"
    NOT_HEARTBEAT = "not a heartbeat check"
    BAD_TOKEN = "missing or wrong token"
    NOT_STARTED = "heartbeat checks added by a reload need a restart"


def judge(config: Config, check_id: str, token: str | None) -> Beat:
    """May this beat be recorded: the check exists, takes heartbeats, and the bearer
    token is the check's (compared in constant time), when it has one."""
    check = config.find_check(check_id)
    if check is None:
        return Beat.UNKNOWN
    if check.heartbeat is None:
        return Beat.NOT_HEARTBEAT
    if check.token is not None:
        given = (token or "").encode()
        if not hmac.compare_digest(given, check.token.get().encode()):
            return Beat.BAD_TOKEN
    return Beat.ACCEPTED


class HeartbeatSource:
    kind = HEARTBEAT_SOURCE

    def __init__(self, name: str, config: Config, clock: Clock | None = None):
        self.name = name
        self.clock = clock or SystemClock()
        self.config = config
        self.addresses: set[str] = set()
        self.started = self.clock.now()  # the grace before a first beat counts from here
        self.last: dict[str, tuple[float, str | None]] = {}  # check id -> (time, message)
        self._sink: Sink | None = None
        self._task: asyncio.Task | None = None

    @classmethod
    def from_config(cls, name: str, config: Config, clock: Clock | None = None):
        return cls(name, config, clock)

    # -- the Source protocol -------------------------------------------------------------

    def reconfigure(self, config: Config) -> None:
        """A reloaded config: new checks, periods and tokens apply to the next beat."""
        self.config = config

    def subscribe(self, addresses: Iterable[str]) -> None:
        self.addresses.update(addresses)

    def unsubscribe(self, addresses: Iterable[str]) -> None:
        for address in addresses:
            self.addresses.discard(address)
            self.last.pop(address, None)

    async def start(self, sink: Sink) -> None:
        self.started = self.clock.now()
        self._sink = sink
        self.emit_ages()
        self._task = asyncio.ensure_future(self._every_second())

    async def stop(self) -> None:
        self._sink = None
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    # -- beats ---------------------------------------------------------------------------

    def receive(self, check_id: str, token: str | None, message: str | None) -> Beat:
        """One POST: judged, and when accepted recorded and handed to the engine now."""
        verdict = judge(self.config, check_id, token)
        if verdict is Beat.ACCEPTED:
            self.last[check_id] = (self.clock.now(), message or None)
            if check_id in self.addresses:
                self._emit([self.sample(check_id, self.clock.now())])
        return verdict

    def restore(self, last_beats: dict[str, float], alarming: set[str]) -> None:
        """Last beats from before a restart. One is taken back when the check was
        alarming (it stays so) or is still within its period (its alarm is not put
        off); an older one is dropped, and the check gets a period's grace from now."""
        now = self.clock.now()
        for check_id, beat_time in last_beats.items():
            check = self.config.find_check(check_id)
            if check is None or check.heartbeat is None or check_id in self.last:
                continue
            if check_id in alarming or now - beat_time <= check.heartbeat:
                self.last[check_id] = (beat_time, None)

    def emit_ages(self) -> list[Sample]:
        now = self.clock.now()
        batch = [self.sample(address, now) for address in sorted(self.addresses)]
        self._emit(batch)
        return batch

    def sample(self, check_id: str, now: float) -> Sample:
        """The age of the check's last beat (or of the start), saying which."""
        last = self.last.get(check_id)
        if last is None:
            age = max(0.0, now - self.started)
            note = f"no beat since beamwatch started {format_duration(age)} ago"
            return InternalSample(check_id, round(age, 1), self.started, now, note=note)
        beat_time, message = last
        age = max(0.0, now - beat_time)
        note = f"last beat {format_duration(age)} ago" if age >= 1 else "last beat just now"
        if message:
            shown = message if len(message) <= NOTE_MAX else message[:NOTE_MAX] + "…"
            note = f"{note}: {shown}"
        return InternalSample(check_id, round(age, 1), beat_time, now, note=note)

    def _emit(self, batch: list[Sample]) -> None:
        if self._sink is not None and batch:
            self._sink(batch)

    async def _every_second(self) -> None:
        while True:
            await asyncio.sleep(AGE_EVERY)
            try:
                self.emit_ages()
            except Exception:  # a bug here must not end the heartbeats of every check
                log.exception("heartbeat ages could not be handed to the engine")
