"""Checks: pure functions of a check's latest sample and the time -> Evaluation.

No I/O and no clock of their own: the engine passes `now`. A check returns
None when it has no opinion yet (no value during the connection grace
period), so the alarm logic keeps its present state instead of flickering.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..config.schema import CheckConfig
from ..model import Evaluation, Sample, Severity, value_text
from ..model.core import slot_constructor
from .expr import CheckNames, Expression, ExpressionError
from .forecast import Prediction, Trend, forecast_rule


@dataclass(slots=True)
class CheckInput:
    """What the engine remembers between samples for one check."""

    sample: Sample | None = None
    last_update: float | None = None  # beamwatch time of the last sample with a value
    disconnected_since: float | None = None
    started: float = 0.0  # when the check began watching (for "never connected")
    threshold_severity: Severity = Severity.OK  # for hysteresis
    # kinds of error already logged for this check (the engine logs each kind once)
    failures_logged: set[str] = field(default_factory=set)
    trend: Trend | None = None  # recent values, for a check with forecast:
    # the last forecast: when it was made, for which severity, what it said
    prediction: tuple[float, Severity, Prediction | None] | None = None

    def update(self, sample: Sample) -> None:
        self.sample = sample
        if sample.connected:
            self.last_update = sample.received
            self.disconnected_since = None
            if self.trend is not None:
                number, problem = _as_number(sample.value)
                if problem is None:
                    self.trend.add(sample.received, number)
        elif self.disconnected_since is None:
            self.disconnected_since = sample.received


class Check:
    """One configured check, compiled: thresholds, expression, timing rules."""

    def __init__(self, config: CheckConfig, known_checks: CheckNames | list[str],
                 timezone: str = "UTC"):
        self.config = config
        self.id = config.id
        self.expression = Expression(config.when, known_checks) if config.when else None
        has_condition = config.above or config.below or config.when
        self.use_epics_severity = (
            config.epics_severity if config.epics_severity is not None else not has_condition
        )
        self.when_severity = Severity.parse(config.severity)
        self.forecast = forecast_rule(config, timezone)
        # the same check under other limits in some beamline modes (by_mode:)
        self.in_mode = {mode: Check(config.in_mode(mode), known_checks, timezone)
                        for mode in config.by_mode}
        # ids of other checks whose values any of its expressions reads (asked per sample)
        self.reads: frozenset[str] = frozenset(
            set(self.expression.check_ids) if self.expression else set()).union(
            *(variant.reads for variant in self.in_mode.values()))
        # the thresholds, in the order they are judged: (above?, severity, limit, name)
        self._limits = tuple(
            (direction == "above", Severity[name.upper()], limit, name)
            for direction, levels in (("above", config.above), ("below", config.below))
            if levels is not None
            for name in ("minor", "major")
            if (limit := getattr(levels, name)) is not None)
        # thresholds alone (most checks): judged without the general verdict list
        self._thresholds_only = bool(self._limits) and self.expression is None \
            and not self.use_epics_severity and config.forecast is None \
            and config.alert is None
        # the values a float may take to stay OK when the check is OK (thresholds alone, one
        # set of limits): the engine takes such a sample without judging it (on_samples)
        self.ok_band: tuple[float, float] | None = None
        if self._thresholds_only and not self.in_mode:
            self.ok_band = (
                max((lim for up, _, lim, _ in self._limits if not up), default=-math.inf),
                min((lim for up, _, lim, _ in self._limits if up), default=math.inf))

    @staticmethod
    def ok_text(value: float) -> str:
        """The message of an OK verdict on a finite float under thresholds (_judge's hot
        path; the engine writes it for samples it did not judge)."""
        return f"OK ({value:.6g})"

    def evaluate(self, inp: CheckInput, now: float, others: Mapping[str, Any] | None = None,
                 mode: str | None = None) -> Evaluation | None:
        if mode is not None and mode in self.in_mode:
            return self.in_mode[mode].evaluate(inp, now, others)
        cfg = self.config
        sample = inp.sample
        if sample is None:
            if cfg.internal is not None:  # beamwatch itself not sampled (no `run`): no opinion
                return None
            if now - inp.started < cfg.disconnect_grace:
                return None
            return Evaluation(Severity.INVALID, "no value received since start", None, now)
        if not sample.connected:
            since = inp.disconnected_since if inp.disconnected_since is not None else now
            if now - since < cfg.disconnect_grace:
                return None
            return Evaluation(Severity.INVALID, _disconnected_text(sample), None, now)
        if cfg.stale is not None and inp.last_update is not None:
            age = now - inp.last_update
            if age > cfg.stale:
                return Evaluation(Severity.INVALID, f"stale: no update for {age:.0f}s", None, now)
        return self._judge(sample, inp, now, others or {})

    def _judge(self, sample: Sample, inp: CheckInput, now: float,
               others: Mapping[str, Any]) -> Evaluation:
        value = sample.value
        if self.config.alert is not None:  # the alerts' own severity (sources/alertmanager.py)
            return Evaluation(sample.severity, getattr(sample, "note", None) or "", value, now)
        if self._thresholds_only and type(value) is float and value - value == 0.0:
            # the hot path (a finite float under thresholds): what the general path below
            # does for it, without its lists and lookups
            severity, text = self._thresholds(value, inp.threshold_severity)
            inp.threshold_severity = severity
            if severity == Severity.OK:
                text = self.ok_text(value)
            note = getattr(sample, "note", None)
            if note:
                text = f"{text}: {note}"
            return _evaluation(severity, text, value, now, False)
        verdicts: list[tuple[Severity, str]] = []
        forecast: tuple[Severity, str] | None = None
        if self.config.above or self.config.below:
            number, problem = _as_number(value)
            if problem:
                return Evaluation(Severity.INVALID, problem, value, now)
            sev, text = self._thresholds(number, inp.threshold_severity)
            inp.threshold_severity = sev
            verdicts.append((sev, text))
            if self.forecast is not None:
                forecast = self.forecast.verdict(inp, value, sev, now)
                if forecast is not None:
                    verdicts.append(forecast)
        if self.expression is not None:
            try:
                hit = self.expression.evaluate(value, sample.severity, others)
            except ExpressionError as e:
                return Evaluation(Severity.INVALID, str(e), value, now)
            verdicts.append(
                (self.when_severity, f"{self.config.when} (value {_text(value)})")
                if hit else (Severity.OK, "")
            )
        if self.use_epics_severity:
            verdicts.append(_record_alarm(sample))
        # one verdict (most checks: thresholds only) needs no max()
        chosen = verdicts[0] if len(verdicts) == 1 else max(
            verdicts, key=_by_severity, default=(Severity.OK, ""))
        severity, text = chosen
        if severity == Severity.OK:
            text = f"OK ({_text(value)})"
        note = getattr(sample, "note", None)  # internal and heartbeat samples say why
        if note:
            text = f"{text}: {note}"
        # a real alarm of the same severity wins over its forecast (max keeps the first)
        return _evaluation(severity, text, value, now, forecast is not None and chosen is forecast)

    def _thresholds(self, value: float, previous: Severity) -> tuple[Severity, str]:
        """Worst level crossed; a level already alarmed clears only past the hysteresis band."""
        hyst = self.config.hysteresis
        worst_sev, worst = Severity.OK, None
        for above, sev, limit, name in self._limits:
            margin = hyst if previous >= sev else 0.0
            crossed = (value > limit - margin) if above else (value < limit + margin)
            if crossed and sev > worst_sev:
                worst_sev, worst = sev, (above, name, limit)
        if worst is None:
            return Severity.OK, ""
        above, name, limit = worst
        direction = "above" if above else "below"
        return worst_sev, f"{value_text(value)} {direction} {name} limit {limit:g}"


_evaluation = slot_constructor(Evaluation)  # Evaluation(...) without the frozen __init__


def _as_number(value: Any) -> tuple[float, str | None]:
    """The value as a finite float for thresholds, or why it is not one."""
    if value is None:
        return math.nan, "no value"
    if isinstance(value, (tuple, list)):
        return math.nan, f"value is an array of {len(value)}; thresholds need a single number"
    try:
        f = float(value)  # also "12.5", b"12.5" and numpy scalars
    except OverflowError:
        return math.nan, "value is too large for a number"
    except (TypeError, ValueError):
        return math.nan, f"value '{_text(value)}' is not a number"
    # "nan" and "inf" as text are no better than the floats: compared with a limit,
    # NaN would pass every threshold as OK
    if math.isnan(f):
        return f, "value is NaN"
    if math.isinf(f):
        return f, f"value is {value_text(f)}"
    return f, None


def _record_alarm(sample: Sample) -> tuple[Severity, str]:
    """The record's own alarm severity; one EPICS does not define is INVALID, saying so."""
    raw = sample.severity
    known = isinstance(raw, int) and not isinstance(raw, bool) and raw >= 0
    if not known:
        return Severity.INVALID, f"record alarm severity {_text(raw)} is not an EPICS severity"
    sev = Severity(min(int(raw), 3))
    return sev, f"record alarm {sev.name} (status {sample.status})"


MAX_TEXT = 200  # of a value in a message: enough to recognise it, not a dump of an array


def _text(value: Any) -> str:
    """value_text for any value: a 5000-digit int or a deeply nested list cannot be
    printed, and a 200 000-character string is not a message."""
    try:
        text = value_text(value)
    except (ValueError, RecursionError):
        return f"<a {type(value).__name__} too large to show>"
    return text if len(text) <= MAX_TEXT else text[:MAX_TEXT] + "…"


def _disconnected_text(sample: Sample) -> str:
    reason = sample.error or "disconnected"
    where = f" (IOC {sample.server})" if sample.server else ""
    return f"{reason}{where}"


def _by_severity(verdict: tuple[Severity, str]) -> Severity:
    return verdict[0]
