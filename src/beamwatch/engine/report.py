"""The human-load report: is beamwatch keeping its promise to the people it pages?

Metrics from ISA-18.2 and EEMUA 191, computed from the beamline log
(Transitions) and what was sent (Pages):

- alarm rate: activations (OK → not OK) per hour; ISA-18.2 calls about 6/h
  (1 per 10 min) "very likely acceptable" and 12/h "maximum manageable" for
  one operator;
- pages per person per hour, and each person's worst 10 minutes;
- floods: 10-minute periods with more than 10 alarms (ISA-18.2 aims for
  under ~1 % of the time), and the peak count in any 10 minutes;
- chattering alarms: 3 or more activations within a minute;
- stale (standing) alarms: active for more than 24 h;
- the most frequent alarms, and the share of all alarms the top 10 cause
  (EEMUA 191: a few bad actors usually dominate).

Pure: lists in, a dataclass out.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field

from ..model import Severity, Transition

TEN_MIN = 600.0
ACCEPTABLE_PER_HOUR = 6.0  # ISA-18.2: very likely acceptable
MANAGEABLE_PER_HOUR = 12.0  # ISA-18.2: maximum manageable
FLOOD = 10  # alarms in 10 minutes
CHATTER = 3  # activations in 60 s
STALE = 86400.0


@dataclass(frozen=True, slots=True)
class Page:
    """One notification that reached (or was sent to) a person."""

    time: float
    person: str
    check_id: str | None = None
    incident_id: str | None = None


@dataclass(frozen=True, slots=True)
class PersonLoad:
    person: str
    pages: int
    per_hour: float
    peak_10min: int


@dataclass(frozen=True, slots=True)
class CheckCount:
    check_id: str
    count: int
    share: float  # of all activations, 0..1


@dataclass(frozen=True, slots=True)
class Chattering:
    check_id: str
    peak_per_minute: int


@dataclass(frozen=True, slots=True)
class Stale:
    check_id: str
    since: float
    hours: float
    still_active: bool


@dataclass
class LoadReport:
    start: float
    end: float
    hours: float
    alarms: int
    alarms_per_hour: float
    peak_alarms_10min: int
    flood_periods: int  # aligned 10-minute periods with more than FLOOD alarms
    flood_share: float  # of all 10-minute periods, 0..1
    rating: str  # "acceptable", "manageable", "overloaded"
    muted: dict[str, int]  # activations by mute reason (those nobody was paged for)
    pages: int
    pages_per_hour: float
    peak_pages_10min: int
    people: list[PersonLoad] = field(default_factory=list)
    chattering: list[Chattering] = field(default_factory=list)
    stale: list[Stale] = field(default_factory=list)
    most_frequent: list[CheckCount] = field(default_factory=list)
    top10_share: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)


def peak_in_window(times: Iterable[float], window: float = TEN_MIN) -> int:
    """The most events in any half-open interval [t, t + window)."""
    ts = sorted(times)
    best = j = 0
    for i in range(len(ts)):
        while ts[i] - ts[j] >= window:
            j += 1
        best = max(best, i - j + 1)
    return best


def load_report(transitions: Sequence[Transition], pages: Sequence[Page], *,
                start: float | None = None, end: float | None = None,
                top: int = 10) -> LoadReport:
    """The report for [start, end) (default: the span of the data)."""
    times = [tr.time for tr in transitions] + [p.time for p in pages]
    start = min(times, default=0.0) if start is None else start
    end = max(times, default=start) if end is None else end
    hours = max(end - start, 1.0) / 3600.0
    trs = sorted((tr for tr in transitions if tr.time < end), key=lambda tr: tr.time)
    in_range = [tr for tr in trs if tr.time >= start]
    pages = [p for p in pages if start <= p.time < end]

    activations = [tr for tr in in_range if tr.old == Severity.OK and tr.new > Severity.OK]
    alarm_times = [tr.time for tr in activations]
    per_hour = len(activations) / hours

    periods = Counter(int((t - start) // TEN_MIN) for t in alarm_times)
    n_periods = max(1, int(-(-(end - start) // TEN_MIN)))
    floods = sum(1 for n in periods.values() if n > FLOOD)

    by_check: dict[str, list[float]] = defaultdict(list)
    for tr in activations:
        by_check[tr.check_id].append(tr.time)
    counts = sorted(((len(v), k) for k, v in by_check.items()), key=lambda x: (-x[0], x[1]))
    total = len(activations) or 1
    most = [CheckCount(k, n, n / total) for n, k in counts[:top]]
    chatter = [Chattering(k, peak_in_window(v, 60.0)) for k, v in sorted(by_check.items())
               if peak_in_window(v, 60.0) >= CHATTER]

    by_person: dict[str, list[float]] = defaultdict(list)
    for p in pages:
        by_person[p.person].append(p.time)
    people = [PersonLoad(who, len(ts), len(ts) / hours, peak_in_window(ts))
              for who, ts in sorted(by_person.items())]

    rating = ("acceptable" if per_hour <= ACCEPTABLE_PER_HOUR
              else "manageable" if per_hour <= MANAGEABLE_PER_HOUR else "overloaded")
    return LoadReport(
        start=start, end=end, hours=round(hours, 3), alarms=len(activations),
        alarms_per_hour=round(per_hour, 3), peak_alarms_10min=peak_in_window(alarm_times),
        flood_periods=floods, flood_share=round(floods / n_periods, 4), rating=rating,
        muted=dict(Counter(str(tr.muted) for tr in activations if tr.muted is not None)),
        pages=len(pages), pages_per_hour=round(len(pages) / hours, 3),
        peak_pages_10min=peak_in_window(p.time for p in pages),
        people=people, chattering=chatter, stale=_stale(trs, end), most_frequent=most,
        top10_share=round(sum(c.count for c in most[:10]) / total, 4) if activations else 0.0,
    )


def _stale(transitions: Sequence[Transition], end: float) -> list[Stale]:
    """Alarms whose active spell (not OK until back to OK) lasted more than 24 h,
    including spells that began before the report's start."""
    since: dict[str, float] = {}
    out: list[Stale] = []
    for tr in transitions:
        if tr.new > Severity.OK and tr.check_id not in since:
            since[tr.check_id] = tr.time
        elif tr.new == Severity.OK and tr.check_id in since:
            began = since.pop(tr.check_id)
            if tr.time - began > STALE:
                out.append(Stale(tr.check_id, began, round((tr.time - began) / 3600, 2), False))
    for check_id, began in since.items():
        if end - began > STALE:
            out.append(Stale(check_id, began, round((end - began) / 3600, 2), True))
    return sorted(out, key=lambda s: (s.since, s.check_id))
