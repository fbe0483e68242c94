"""The EPICS Archiver Appliance as a history backend: a PV's past, before beamwatch ran.

Not a live source (no check's `source:` names it): it answers "what did this PV
do between t0 and t1" from the appliance's retrieval API,

    GET {url}/retrieval/data/getData.json?pv=NAME&from=ISO8601&to=ISO8601

which answers `[{"meta": {"name": …, "PREC": …}, "data": [{"secs", "nanos", "val",
"severity", "status"}, …]}]` (older and `.qw` answers carry `millis` instead of
secs/nanos). Long spans ask for `mean_N(NAME)`, one mean per N seconds, so a 72 h
plot is ~1500 points, not the 10 Hz PV's 2.6 million.

Synchronous (httpx.Client): the callers are the web API's worker threads, the Slack
bot's executor and the CLI; an async caller uses `asyncio.to_thread`. Answers are
kept for CACHE_FOR seconds (a failure for FAILED_FOR) so a dashboard refreshing
every few seconds asks the archiver once a minute, and a hung archiver costs one
timeout a minute, not one per refresh.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from ..config.schema import Config, SourceConfig

MAX_POINTS = 1500  # points asked for per request, at most (about one per plot pixel)
RAW_SPAN = 3600.0  # spans up to this are asked for raw (exact min/max per minute)
MIN_BIN = 60  # seconds: never finer than the store's minutes
CACHE_FOR = 60.0  # seconds an answer is reused
FAILED_FOR = 30.0  # seconds a failure is remembered (the archiver is not asked again)
CACHE_MAX = 512  # answers kept

# Channel Archiver special severities the appliance passes through: no value at all
# (0x0f00 no value, 0x0f08 disabled, 0x0f20 archive stopped, 0x0f40 disconnected).
# 0x0f10/0x0f80 (repeat, estimated repeat) carry a real value and are kept.
NO_VALUE_SEVERITIES = frozenset({3840, 3848, 3872, 3904})


class ArchiverError(Exception):
    """The archiver could not answer; the message names the PV and the URL."""


@dataclass(frozen=True, slots=True)
class ArchivedSample:
    time: float  # seconds since the epoch
    value: Any  # a number, a string, a list (waveform); None: no value (disconnected)
    severity: int = 0  # the record's alarm severity (0..3), or a special one (3904)
    status: int = 0

    @property
    def has_value(self) -> bool:
        return self.value is not None and self.severity not in NO_VALUE_SEVERITIES

    @property
    def number(self) -> float | None:
        """The value as a finite float, else None (strings, waveforms, NaN, gaps)."""
        v = self.value
        if not self.has_value or isinstance(v, bool) or not isinstance(v, int | float):
            return None
        return float(v) if math.isfinite(v) else None


@dataclass(frozen=True, slots=True)
class Archive:
    """Where a check's past is: the archiver source and the archived PV name."""

    source: str
    url: str  # the retrieval base, ending in /retrieval
    pv: str
    timeout: float
    verify: bool


# --- parsing --------------------------------------------------------------------------


def parse(body: str | bytes, pv: str = "") -> list[ArchivedSample]:
    """The samples of a getData.json (or .qw) answer, oldest first. An empty body or
    `[]` (an unknown PV on some versions) is no samples. NaN and ±Infinity, which the
    appliance writes as bare words, are read and then kept as no number."""
    if isinstance(body, bytes):
        body = body.decode("utf-8", errors="replace")
    if not body.strip():
        return []
    try:
        doc = json.loads(body)
    except json.JSONDecodeError as e:
        raise ArchiverError(f"{pv}: the archiver's answer is not JSON ({e.msg} at "
                            f"line {e.lineno})") from None
    if not isinstance(doc, list):
        raise ArchiverError(f"{pv}: the archiver's answer is not a list of PVs")
    out: list[ArchivedSample] = []
    for block in doc:
        if not isinstance(block, dict) or not isinstance(block.get("data", []), list):
            raise ArchiverError(f"{pv}: the archiver's answer has no data list")
        labels = _enum_labels(block.get("meta"))
        for row in block.get("data", []):
            sample = _sample(row, pv)
            if labels and isinstance(sample.value, int) and 0 <= sample.value < len(labels):
                # as the CA source gives an enum: its label (when the archiver sent them)
                sample = ArchivedSample(sample.time, labels[sample.value], sample.severity,
                                        sample.status)
            out.append(sample)
    out.sort(key=lambda s: s.time)
    return out


def _enum_labels(meta: Any) -> list[str]:
    """ENUM_0, ENUM_1, … of the meta (with fetchLatestMetadata=true), in order."""
    if not isinstance(meta, dict):
        return []
    labels = []
    while isinstance(meta.get(f"ENUM_{len(labels)}"), str):
        labels.append(meta[f"ENUM_{len(labels)}"])
    return labels


def _sample(row: Any, pv: str) -> ArchivedSample:
    if not isinstance(row, dict):
        raise ArchiverError(f"{pv}: a sample is not an object: {str(row)[:60]}")
    try:
        if "secs" in row:
            t = float(row["secs"]) + float(row.get("nanos") or 0) / 1e9
        elif "millis" in row:
            t = float(row["millis"]) / 1000.0
        else:
            raise ArchiverError(f"{pv}: a sample has no time (secs or millis): "
                                f"{str(row)[:60]}")
        return ArchivedSample(t, row.get("val"), int(row.get("severity") or 0),
                              int(row.get("status") or 0))
    except (TypeError, ValueError):
        raise ArchiverError(f"{pv}: a sample's time or severity is not a number: "
                            f"{str(row)[:60]}") from None


# --- where a check's past is ----------------------------------------------------------


def archive_of(config: Config, check_id: str) -> Archive | None:
    """The archiver source and PV of a check, or None when it has none: a check's
    `archive:` names them; without it a pv:/pva: check uses its own PV name in the
    first archiver source declared; `archive: false` opts out."""
    sources = {n: s for n, s in config.sources.items() if s.kind == "archiver"}
    if not sources:
        return None
    try:
        check = config.check(check_id)
    except KeyError:
        return None
    ref = check.archive
    if ref is False:
        return None
    name = ref.source if ref is not None and ref.source else next(iter(sources))
    pv = ref.pv if ref is not None and ref.pv else (check.pv or check.pva)
    source = sources.get(name)
    if source is None or not pv:
        return None
    return Archive(name, retrieval_url(source), pv, source.timeout, source.verify)


def retrieval_url(source: SourceConfig) -> str:
    """`url:` may be the appliance (http://host:17665) or its retrieval
    (http://host:17668/retrieval): both mean the same retrieval base."""
    base = source.url.get().rstrip("/") if source.url else ""
    return base if base.endswith("/retrieval") else base + "/retrieval"


# --- asking ---------------------------------------------------------------------------


def iso(t: float) -> str:
    """The appliance's time format: 2026-12-01T06:00:00.000Z."""
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.") + \
        f"{int(round(t * 1000)) % 1000:03d}Z"


def bin_for(span: float) -> int | None:
    """Seconds per mean for a span, or None for raw samples (short spans)."""
    if span <= RAW_SPAN:
        return None
    per = math.ceil(span / MAX_POINTS)
    return max(MIN_BIN, math.ceil(per / MIN_BIN) * MIN_BIN)


def plan(start: float, end: float) -> tuple[float, float, int | None]:
    """What samples() asks for [start, end): the span rounded out to its bin (a minute
    for raw spans), so that a dashboard refreshing every few seconds asks the same
    question for a minute and is answered from the cache, and the bin (None: raw)."""
    step = bin_for(end - start) or MIN_BIN
    lo, hi = math.floor(start / step) * step, math.ceil(end / step) * step
    return lo, hi, bin_for(hi - lo)


def fetch(archive: Archive, start: float, end: float,
          client: httpx.Client | None = None) -> list[ArchivedSample]:
    """The archived samples of [start, end): raw, or `mean_N` for long spans. Raises
    ArchiverError (naming the PV and URL) when the archiver cannot answer."""
    every = bin_for(end - start)
    pv = archive.pv if every is None else f"mean_{every}({archive.pv})"
    target = f"{archive.url}/data/getData.json"
    url = _shown(target)  # for messages: the url may carry a user and password
    params = {"pv": pv, "from": iso(start), "to": iso(end)}
    try:
        if client is not None:
            response = client.get(target, params=params, timeout=archive.timeout)
        else:
            with httpx.Client(verify=archive.verify, timeout=archive.timeout) as own:
                response = own.get(target, params=params)
    except httpx.TimeoutException:
        raise ArchiverError(f"archiver {url} did not answer for {archive.pv} within "
                            f"{archive.timeout:g}s") from None
    except httpx.HTTPError as e:
        raise ArchiverError(f"archiver {url} unreachable for {archive.pv}: "
                            f"{type(e).__name__}: {str(e).replace(target, url)}") from None
    if response.status_code == 404:  # an unknown PV, on some versions
        return []
    if response.status_code != 200:
        raise ArchiverError(f"archiver {url} answered HTTP {response.status_code} for "
                            f"{pv}: {response.text.strip()[:120]}")
    samples = parse(response.content, archive.pv)
    return [s for s in samples if start <= s.time < end]


def _shown(url: str) -> str:
    """The url without its user and password."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))


# --- kept briefly ---------------------------------------------------------------------


class _Cache:
    """Answers per (url, pv, start, end), reused for CACHE_FOR s, failures for FAILED_FOR."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self.clock = clock
        self._lock = threading.Lock()
        self._rows: dict[tuple, tuple[float, list[ArchivedSample] | ArchiverError]] = {}

    def get(self, key: tuple, ask: Callable[[], list[ArchivedSample]]) -> list[ArchivedSample]:
        now = self.clock()
        with self._lock:
            hit = self._rows.get(key)
        if hit is not None and hit[0] > now:
            if isinstance(hit[1], ArchiverError):
                raise hit[1]
            return hit[1]
        try:
            answer: list[ArchivedSample] | ArchiverError = ask()
        except ArchiverError as e:
            answer = e
        with self._lock:
            if len(self._rows) >= CACHE_MAX:
                self._rows = {k: v for k, v in self._rows.items() if v[0] > now}
                if len(self._rows) >= CACHE_MAX:
                    self._rows.clear()
            until = now + (FAILED_FOR if isinstance(answer, ArchiverError) else CACHE_FOR)
            self._rows[key] = (until, answer)
        if isinstance(answer, ArchiverError):
            raise answer
        return answer

    def clear(self) -> None:
        with self._lock:
            self._rows.clear()


CACHE = _Cache()


def samples(archive: Archive, start: float, end: float) -> list[ArchivedSample]:
    """fetch() of plan(start, end) through the cache, cut to [start, end)."""
    lo, hi, _ = plan(start, end)
    key = (archive.url, archive.pv, lo, hi)
    got = CACHE.get(key, lambda: fetch(archive, lo, hi))
    return [s for s in got if start <= s.time < end]


def points(config: Config, check_id: str, start: float, end: float) -> list[tuple[float, float]]:
    """The archived numeric values of a check in [start, end) as (time, value), oldest
    first: raw samples for spans up to an hour, one mean per bin (≥ 60 s, ≤ 1500
    points) beyond. [] when the check has no archive or the PV has no data; gaps
    (disconnected, archiving off), strings, waveforms and NaN are left out.
    Synchronous (blocking HTTP, cached): from async code use asyncio.to_thread.
    Raises ArchiverError when the archiver cannot answer."""
    archive = archive_of(config, check_id)
    if archive is None or end <= start:
        return []
    return [(s.time, n) for s in samples(archive, start, end) if (n := s.number) is not None]
