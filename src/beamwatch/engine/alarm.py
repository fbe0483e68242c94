"""Alarm logic of one check: `for:` delay, `count:` in a window, latch, acknowledgement.

The vocabulary is the Phoebus alarm server's: `current` is what the check
says now (after its delay), `severity` is the alarm severity people see —
with `latch: true` it stays at the worst seen until someone acknowledges.
No I/O, no clock: every call gets `now`, and returns the transitions it made.

`count: {times, within}` is Phoebus's alarm count: a pending alarm is committed
at once when the check has left OK `times` times within `within` seconds, even
if each departure was shorter than `for:`. A check with `count:` and no `for:`
waits `within` before raising instead, so one long departure still alarms
(Phoebus uses the delay as the count's window), and clears at once.
Departures are kept in memory only: a restart starts counting again.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import replace

from ..model import AlarmState, Evaluation, Severity, Transition
from ..model.core import slot_constructor

_state = slot_constructor(AlarmState)  # AlarmState(...) without the frozen __init__

FORECAST_PREFIX = "forecast: "  # how checks/forecast.py begins its messages

# How a newly committed `current` severity changes the alarm severity and the
# acknowledgement, as a table: (latch, new current vs alarm severity, acked) ->
# (alarm severity becomes "new" or "keep", acked becomes True/False/"keep").
# "worse" always re-arms: a worse alarm needs a new acknowledgement.
_ANY = None
RULES: list[tuple[bool | None, str, bool | None, str, bool | str]] = [
    # latch  compare    acked   severity  acked
    (_ANY,   "worse",   _ANY,   "new",    False),
    (False,  "same",    _ANY,   "new",    "keep"),
    (False,  "better",  _ANY,   "new",    "keep"),
    (False,  "ok",      _ANY,   "new",    False),
    (True,   "same",    _ANY,   "keep",   "keep"),
    (True,   "better",  False,  "keep",   False),  # latched: stays until acknowledged
    (True,   "ok",      False,  "keep",   False),
    (True,   "better",  True,   "new",    True),
    (True,   "ok",      True,   "new",    False),
]


# When a pending severity (the check says something other than `current`) is
# committed, as a table: (raising, held for `for:`, counted `times` within the
# window) -> commit now. "raising" is a worse severity than `current`; count
# only ever hastens an alarm, never a clear.
COMMIT_RULES: list[tuple[bool | None, bool, bool | None, bool]] = [
    # raising  held   counted  commit
    (_ANY,     True,  _ANY,    True),   # held as long as `for:` asks
    (True,     False, True,    True),   # out of limits often enough, each time shorter
    (True,     False, False,   False),  # wait: for `for:` or for one more departure
    (False,    False, _ANY,    False),  # clearing (or better) waits out `for:`
]


def _commits(raising: bool, held: bool, counted: bool) -> bool:
    for r_raising, r_held, r_counted, commit in COMMIT_RULES:
        if r_raising in (_ANY, raising) and r_held == held and r_counted in (_ANY, counted):
            return commit
    raise AssertionError(f"no commit rule for raising={raising} held={held} counted={counted}")


def _compare(new: Severity, alarm: Severity) -> str:
    if new > alarm:
        return "worse"
    if new == alarm:
        return "same"
    return "ok" if new == Severity.OK else "better"


def _rule(latch: bool, compare: str, acked: bool) -> tuple[str, bool | str]:
    for r_latch, r_cmp, r_acked, sev, ack in RULES:
        if r_latch in (_ANY, latch) and r_cmp == compare and r_acked in (_ANY, acked):
            return sev, ack
    raise AssertionError(f"no alarm rule for latch={latch} {compare} acked={acked}")


def _defined(ev: Evaluation) -> tuple[Severity, str]:
    """The evaluation's severity and message as the table needs them: a severity that is
    not one of the four is INVALID (a bug in a check must still be seen), and a message
    always says why."""
    severity, message = ev.severity, ev.message
    if type(severity) is Severity and type(message) is str and message.strip():
        return severity, message  # the usual case, once per sample: keep it cheap
    message = "" if message is None else _shown(message, str)
    if isinstance(severity, int) and not isinstance(severity, bool) and 0 <= severity <= 3:
        severity = Severity(severity)
    if not isinstance(severity, Severity):
        why = f"the check gave no valid severity ({_shown(severity, repr)})"
        return Severity.INVALID, f"{why}: {message}" if message else why
    if not message:
        message = "OK" if severity == Severity.OK else f"{severity.name} (the check gave no reason)"
    return severity, message


def _shown(thing: object, how: Callable[[object], str]) -> str:
    try:
        text = how(thing)
    except (ValueError, RecursionError):  # a 5000-digit int cannot be printed
        return f"<unprintable {type(thing).__name__}>"
    return text if text.strip() else ""


class AlarmLogic:
    def __init__(self, check_id: str, delay: float = 0.0, latch: bool = False,
                 state: AlarmState | None = None, count: tuple[int, float] | None = None):
        self.check_id = check_id
        self.count = count  # (times, within seconds) or None
        self.delay = delay
        # with count: and no for:, one long departure alarms after the window; clears
        # stay immediate
        self.raise_delay = delay if delay > 0 or count is None else count[1]
        self.latch = latch
        self.state = state or AlarmState(check_id)
        s = self.state
        self._said = s.pending if s.pending is not None else s.current  # the last evaluation
        self._departures: deque[float] = deque()  # when it left OK, within the window
        # whether `current` is a forecast (checks/forecast.py) rather than a crossed limit;
        # a restored state says so in its message
        self.forecast = self.state.message.startswith(FORECAST_PREFIX)
        self._pending_forecast = False

    # -- inputs ---------------------------------------------------------------------

    def evaluate(self, ev: Evaluation, now: float) -> list[Transition]:
        """A new evaluation: commit it now, or start/continue waiting out the delay."""
        s = self.state
        severity, message = _defined(ev)
        if self.count is not None:
            self._count_departure(severity, now)
        self._said = severity
        forecast = ev.forecast is True
        if severity == s.current:
            # once per sample on a quiet beamline: positional, not replace() (3x slower)
            self.state = _state(s.check_id, s.severity, s.current, s.acked, s.acked_by,
                                s.acked_at, s.since, message, ev.value, None, None)
            if forecast != self.forecast and severity > Severity.OK:
                # the same severity, but the forecast came true (or a crossed limit eased
                # back to a forecast): a row of the beamline log, in the same incident
                self.forecast = forecast
                return [self._transition(s, now, "forecast" if forecast
                                         else "forecast came true")]
            return []
        pending_since = s.pending_since if s.pending is not None else now
        self._pending_forecast = forecast
        self.state = replace(s, pending=severity, pending_since=pending_since,
                             message=message, value=ev.value)
        held = now - pending_since >= self._delay(severity, s.current)
        if _commits(severity > s.current, held, self._counted(now)):
            self._departures.clear()  # the next alarm needs `times` new departures
            return self._commit(now, self._reason())
        return []

    def _reason(self) -> str:
        return "forecast" if self._pending_forecast else "evaluation"

    def _count_departure(self, severity: Severity, now: float) -> None:
        # departures while already in alarm do not count towards the next alarm
        if self._said == Severity.OK and severity != Severity.OK \
                and self.state.current == Severity.OK:
            self._departures.append(now)

    def _counted(self, now: float) -> bool:
        """Has the check left OK `times` times within the window ending now?"""
        if self.count is None:
            return False
        times, within = self.count
        while self._departures and self._departures[0] < now - within:
            self._departures.popleft()
        return len(self._departures) >= times

    def tick(self, now: float) -> list[Transition]:
        """Time passed: commit a pending severity whose delay has run out."""
        deadline = self.deadline
        if deadline is not None and now >= deadline:
            return self._commit(now, self._reason())
        return []

    def acknowledge(self, who: str, now: float) -> list[Transition]:
        s = self.state
        if s.severity == Severity.OK or s.acked:
            return []
        if self.latch and s.current < s.severity:
            new_sev, acked = s.current, s.current > Severity.OK
        else:
            new_sev, acked = s.severity, True
        self.state = replace(
            s, severity=new_sev, acked=acked, acked_by=who, acked_at=now,
            since=now if new_sev != s.severity else s.since,
        )
        return [self._transition(s, now, "ack", actor=who)]

    @property
    def deadline(self) -> float | None:
        s = self.state
        if s.pending is None or s.pending_since is None:
            return None
        return s.pending_since + self._delay(s.pending, s.current)

    def _delay(self, pending: Severity, current: Severity) -> float:
        return self.raise_delay if pending > current else self.delay

    # -- the table --------------------------------------------------------------------

    def _commit(self, now: float, reason: str) -> list[Transition]:
        s = self.state
        new = s.pending if s.pending is not None else s.current
        if s.pending is not None:
            self.forecast = self._pending_forecast and new > Severity.OK
        sev_choice, ack_choice = _rule(self.latch, _compare(new, s.severity), s.acked)
        severity = new if sev_choice == "new" else s.severity
        acked = s.acked if ack_choice == "keep" else bool(ack_choice)
        self.state = replace(
            s, current=new, severity=severity, acked=acked, pending=None, pending_since=None,
            since=now if severity != s.severity else s.since,
            acked_by=s.acked_by if acked else None, acked_at=s.acked_at if acked else None,
        )
        if (self.state.severity, self.state.current, self.state.acked) == (
            s.severity, s.current, s.acked
        ):
            return []
        return [self._transition(s, now, reason)]

    def _transition(self, old: AlarmState, now: float, reason: str,
                    actor: str | None = None) -> Transition:
        new = self.state
        return Transition(
            check_id=self.check_id, time=now, old=old.severity, new=new.severity,
            current=new.current, acked=new.acked, value=new.value, message=new.message,
            reason=reason, actor=actor,
        )
