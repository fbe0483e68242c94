"""Reading the teams' iCalendar feeds (`teams.X.ical`): the only I/O in routing.

A file path is read relative to the config file's folder; an http(s) URL is
fetched with `fetch` (by default httpx, 10 s). Errors are collected per team,
never raised, so one broken feed does not stop routing: `OnCallResolver` falls
back to the team's rota and says why.

In a running engine, `CalendarFeeds` keeps the feeds current: URLs are fetched
in worker threads (never on the event loop, so a slow calendar server never
delays a tick), every feed is read again every `teams.X.ical_refresh` (15 min),
and a read that fails keeps the last good copy, logged and shown in on-call
answers as "calendar stale since …". The feeds live in a `CalendarHolder` whose
mapping is replaced whole, so the router never sees half a refresh. The last
good copy of each URL feed is also kept on disk (`BEAMWATCH_CACHE_DIR`, else
the user's cache folder), so a restart, or `beamwatch oncall`, while the
calendar server is down still has the rota it last published.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING

from ..clock import Clock, SystemClock
from ..config.schema import Config

if TYPE_CHECKING:  # pragma: no cover
    import icalendar

Fetch = Callable[[str], bytes]


def parse_calendar(data: bytes | str) -> icalendar.Calendar:
    """Parse iCalendar text; X-WR-TIMEZONE calendars (Google) are made standard."""
    import icalendar

    cal = icalendar.Calendar.from_ical(data)
    try:
        import x_wr_timezone
    except ImportError:  # pragma: no cover - a dependency of recurring-ical-events
        return cal
    return x_wr_timezone.to_standard(cal)


def http_fetch(url: str, timeout: float = 10.0) -> bytes:
    import httpx

    response = httpx.get(url, timeout=timeout, follow_redirects=True)
    response.raise_for_status()
    return response.content


def read_source(source: str, base: Path | None = None, fetch: Fetch | None = None) -> bytes:
    if source.startswith(("http://", "https://", "webcal://")):
        url = "https://" + source[len("webcal://"):] if source.startswith("webcal://") else source
        return (fetch or http_fetch)(url)
    path = Path(source).expanduser()
    if not path.is_absolute() and base is not None:
        path = base / path
    return path.read_bytes()


def read_calendar(source: str, base: Path | None = None, fetch: Fetch | None = None,
                  ) -> tuple[icalendar.Calendar | None, str | None, bytes]:
    """One feed: (calendar, None, its bytes) or (None, why not, b"")."""
    try:
        data = read_source(source, base, fetch)
        return parse_calendar(data), None, data
    except OSError as e:
        return None, f"cannot read {source}: {e.strerror or e}", b""
    except ValueError as e:  # icalendar's parse errors are ValueErrors
        return None, f"{source} is not valid iCalendar: {e}", b""
    except Exception as e:  # noqa: BLE001 - httpx errors, anything a feed can throw
        first = str(e).splitlines()[0] if str(e) else ""  # httpx adds a line of advice
        return None, f"cannot fetch {source}: {type(e).__name__}: {first}", b""


def load_calendars(config: Config, base: Path | None = None, fetch: Fetch | None = None,
                   ) -> tuple[dict[str, icalendar.Calendar], dict[str, str]]:
    """The parsed feed of every team with `ical:`, and the error of each that failed."""
    calendars: dict[str, icalendar.Calendar] = {}
    errors: dict[str, str] = {}
    for name, team in config.teams.items():
        if not team.ical:
            continue
        calendar, error, _ = read_calendar(team.ical, base, fetch)
        if calendar is not None:
            calendars[name] = calendar
        else:
            errors[name] = error or "unreadable"
    return calendars, errors


def is_url(source: str) -> bool:
    return source.startswith(("http://", "https://", "webcal://"))


def without_secrets(text: str, source: str) -> str:
    """`text` with the feed's URL cut to scheme and host: a private calendar URL (Google's
    "secret address") is a password, and must not reach the logs."""
    if not is_url(source):
        return text
    host = re.match(r"[a-z]+://[^/?#]*", source)
    label = f"{host.group(0) if host else 'https://?'}/…"
    https = "https://" + source[len("webcal://"):] if source.startswith("webcal://") else source
    return text.replace(source, label).replace(https, label)


# --- the running engine's feeds ----------------------------------------------------------------


@dataclass(frozen=True)
class Feed:
    """A team's calendar as last read. `calendar` is the last good copy (read at
    `read_at`); `error`: why the latest read failed, None when it worked."""

    team: str
    source: str
    calendar: icalendar.Calendar | None = None
    read_at: float | None = None
    error: str | None = None

    @property
    def stale(self) -> bool:
        """The latest read failed, and an older copy is in use."""
        return self.error is not None and self.calendar is not None


class CalendarHolder:
    """The current `Feed` of each team. A refresh replaces the whole mapping in one
    assignment, so a reader that takes `feeds` once sees one consistent set."""

    def __init__(self, feeds: Mapping[str, Feed] | None = None):
        self.feeds: Mapping[str, Feed] = MappingProxyType(dict(feeds or {}))

    def swap(self, feeds: Mapping[str, Feed]) -> None:
        self.feeds = MappingProxyType(dict(feeds))

    def get(self, team: str) -> Feed | None:
        return self.feeds.get(team)

    @classmethod
    def of(cls, config: Config, calendars: Mapping[str, icalendar.Calendar] | None = None,
           errors: Mapping[str, str] | None = None) -> CalendarHolder:
        """Feeds already read (`load_calendars`'s answer)."""
        feeds = {}
        for name, team in config.teams.items():
            if team.ical:
                feeds[name] = Feed(name, team.ical, (calendars or {}).get(name), None,
                                   (errors or {}).get(name))
        return cls(feeds)


DEFAULT_REFRESH = 900.0
RETRY_FAILED = 300.0  # a failing feed is tried again sooner than a good one is refreshed

log = logging.getLogger("beamwatch.calendars")


def cache_dir() -> Path:
    root = os.environ.get("BEAMWATCH_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "beamwatch")
    return Path(root) / "calendars"


class CalendarFeeds:
    """Keeps every team's feed current for one running config (see the module doc).

    `configure` (start, SIGHUP) gives the holder the resolver reads; `run` refreshes
    in the background; `read_now` reads everything due at once (the CLI)."""

    def __init__(self, config: Config, base: Path | None = None, clock: Clock | None = None,
                 fetch: Fetch | None = None, cache: Path | None = None):
        self.clock = clock or SystemClock()
        self.fetch = fetch
        self.cache = cache
        self.holder = CalendarHolder()
        self.base = base
        self._due: dict[str, float] = {}  # team -> when it is read next
        self._every: dict[str, float] = {}
        self._wake: asyncio.Event | None = None
        self.configure(config, base)

    # -- configuration ------------------------------------------------------------------

    def configure(self, config: Config, base: Path | None = None) -> CalendarHolder:
        """A (re)loaded config: a team whose feed is the same source keeps it; a new or
        changed one starts from its disk copy and is read at once; local files are read
        here (start and SIGHUP), URLs in the background."""
        self.base = base if base is not None else self.base
        old = self.holder.feeds
        feeds: dict[str, Feed] = {}
        for name, team in config.teams.items():
            if not team.ical:
                continue
            self._every[name] = max(1.0, float(getattr(team, "ical_refresh", DEFAULT_REFRESH)))
            prev = old.get(name)
            if prev is not None and prev.source == team.ical:
                feeds[name] = prev
                continue
            feeds[name] = self._from_disk(name, team.ical)
            self._due[name] = -math.inf
        for name in set(self._due) - set(feeds):
            del self._due[name]
        self.holder.swap(feeds)
        files = [f for f in feeds.values() if not is_url(f.source) and self._due[f.team] <= 0]
        for feed in files:
            self._store(feed, *read_calendar(feed.source, self.base, self.fetch))
        if self._wake is not None:
            self._wake.set()
        return self.holder

    # -- reading --------------------------------------------------------------------------

    def due(self) -> list[Feed]:
        now = self.clock.now()
        return [f for f in self.holder.feeds.values() if self._due.get(f.team, 0) <= now]

    def read_now(self) -> CalendarHolder:
        """Read every due feed here and now (the CLI, which has no loop to keep free)."""
        for feed in self.due():
            self._store(feed, *read_calendar(feed.source, self.base, self.fetch))
        return self.holder

    async def refresh(self) -> None:
        """Read the due feeds in worker threads, then swap the results in."""
        due = self.due()
        results = await asyncio.gather(*(
            asyncio.to_thread(read_calendar, f.source, self.base, self.fetch) for f in due))
        for feed, result in zip(due, results, strict=True):
            self._store(feed, *result)

    async def run(self, stop: asyncio.Event) -> None:
        """Refresh until `stop`: wakes for the next due feed, or at once after `configure`."""
        self._wake = asyncio.Event()
        while not stop.is_set():
            self._wake.clear()
            try:
                await self.refresh()
            except Exception:  # a bug here must not end the refreshing for good
                log.exception("calendar refresh failed")
            nxt = min(self._due.values(), default=math.inf)
            wait = min(60.0, max(1.0, nxt - self.clock.now()))
            waiter = asyncio.ensure_future(self._wake.wait())
            stopper = asyncio.ensure_future(stop.wait())
            await asyncio.wait({waiter, stopper}, timeout=wait,
                               return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
            stopper.cancel()

    def _store(self, feed: Feed, calendar: icalendar.Calendar | None, error: str | None,
               data: bytes) -> None:
        now = self.clock.now()
        current = self.holder.feeds.get(feed.team)
        if current is None or current.source != feed.source:
            return  # a reload changed the feed while it was being read
        if calendar is not None:
            new = Feed(feed.team, feed.source, calendar, now, None)
            if current.error is not None:
                log.warning("calendar of team %s readable again", feed.team)
            self._to_disk(new, data)
            self._due[feed.team] = now + self._every[feed.team]
        else:
            new = replace(current, error=error)
            said = without_secrets(error or "", feed.source)
            if current.calendar is not None:
                log.warning("calendar of team %s unreadable, keeping the copy read at %s: %s",
                            feed.team, _when(current.read_at), said)
            else:
                log.warning("calendar of team %s unusable: %s", feed.team, said)
            self._due[feed.team] = now + min(self._every[feed.team], RETRY_FAILED)
        self.holder.swap({**self.holder.feeds, feed.team: new})

    # -- the copy on disk ---------------------------------------------------------------------

    def _path(self, team: str, source: str) -> Path:
        key = hashlib.sha256(f"{team}\0{source}".encode()).hexdigest()[:24]
        return (self.cache or cache_dir()) / f"{key}.ics"

    def _from_disk(self, team: str, source: str) -> Feed:
        if not is_url(source):
            return Feed(team, source)
        path = self._path(team, source)
        try:
            calendar = parse_calendar(path.read_bytes())
            read_at = path.stat().st_mtime
        except (OSError, ValueError):
            return Feed(team, source)
        return Feed(team, source, calendar, read_at, "not fetched since the start")

    def _to_disk(self, feed: Feed, data: bytes) -> None:
        if not is_url(feed.source) or not data:
            return
        path = self._path(feed.team, feed.source)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(data)
            os.utime(tmp, (feed.read_at or 0, feed.read_at or 0))
            os.replace(tmp, path)  # whole or not at all
        except OSError as e:
            log.info("cannot keep a copy of team %s's calendar on disk: %s", feed.team, e)


def _when(t: float | None) -> str:
    from ._time import show

    return show(t, "UTC")
