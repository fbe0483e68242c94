"""The engine loop: samples in, transitions stored, notifications queued.

    source --batch of Samples--> on_samples() --> Check.evaluate --> AlarmLogic
        --> Transitions --> decider (mute stages, routing) --> store.record()

Everything on the hot path runs on the asyncio loop's thread and does no I/O;
the store is written by one writer thread, in order. A transition is
committed together with the notifications it causes before any is sent.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..checks.evaluate import Check, CheckInput
from ..checks.expr import CheckNames
from ..clock import Clock, SystemClock
from ..config.schema import CheckConfig, Config
from ..model import AlarmState, Evaluation, Sample, Severity, Transition
from ..model.decision import Decision
from ..sources.base import Source
from ..store import LatestValue, Store
from ..store.errors import describe
from .alarm import AlarmLogic
from .history import MinuteHistory
from .past import PastValues, stored_values
from .writer import Batch, BatchWriter, WriterStats

log = logging.getLogger(__name__)

# seconds: a latest value whose severity and connection stay is stored this often
VALUE_REFRESH = 10.0
REFRESH_ROWS = 1000  # ... or less often, so that refreshing writes at most this many rows/s
# Values and history are written this many rows per transaction. Each write holds the HA
# lease row (the fence) until it commits, and the lease cannot be renewed meanwhile:
# 100k history rows in one transaction took seconds on PostgreSQL. Between chunks the
# writer thread also stores transitions, which do not wait behind a minute's history.
WRITE_CHUNK = 2000


class Decider(Protocol):
    """What the engine asks of deciding (mute stages, incidents, routing): the
    implementation is beamwatch.paging.decide.Decider. Every call returns one
    Decision, which the engine stores as one batch."""

    def decide(self, transitions: list[Transition], now: float) -> Decision:
        """The transitions annotated (mute reason, incident), same order, and what
        they cause (outbox rows with `transition_index` into them)."""

    def tick(self, now: float) -> Decision:
        """Time passed: held failures settle, muted pages are offered again."""

    def on_mode_sample(self, sample: Sample, now: float) -> Decision:
        """A sample of the mode PV: the mode changes it makes, logged and announced."""

    def mode(self, now: float) -> str | None:
        """The beamline mode now (None: modes are not followed)."""


class NoNotifications:
    """The Decider of an engine that only logs (tests, tools): decides nothing."""

    def decide(self, transitions: list[Transition], now: float) -> Decision:
        return Decision(transitions=list(transitions))

    def tick(self, now: float) -> Decision:
        return Decision()

    def on_mode_sample(self, sample: Sample, now: float) -> Decision:
        return Decision()

    def mode(self, now: float) -> str | None:
        return None


# Stores what a decision holds besides transitions and rows (incident snapshots, mode
# changes) in the batch's own transaction: (decision, now, connection) -> None
Keep = Callable[[Decision, float, Any], None]


@dataclass
class Runtime:
    """Everything the engine keeps for one check."""

    check: Check
    logic: AlarmLogic
    input: CheckInput
    last_eval: Evaluation | None = None
    address: str = ""
    source: str = "ca"
    dirty: bool = False  # the latest value changed since the last flush
    stored: tuple | None = None  # (severity, connected, message) of the row last stored
    stored_at: float = float("-inf")  # when it was stored
    # Check.ok_band when nothing else depends on judging each sample of this check
    quick: tuple[float, float] | None = None
    timed: bool = False  # judged every second: `stale:` or a forecast


@dataclass
class EngineStats:
    """Counters the self-monitoring checks (`beamwatch.*`) read."""

    samples: int = 0
    samples_by_source: dict[str, int] = field(default_factory=dict)
    batches: int = 0
    transitions: int = 0
    last_tick: float | None = None  # when `tick` last ran (clock time)
    store: WriterStats = field(default_factory=WriterStats)

    @property
    def write_errors(self) -> int:  # failed attempts to store a decided batch
        return self.store.write_errors

    @property
    def quarantined(self) -> int:  # rows the store refused for good (table `quarantine`)
        return self.store.quarantined

    @property
    def store_failing_since(self) -> float | None:  # first failed write of this outage
        return self.store.failing_since

    @property
    def store_last_error(self) -> str | None:
        return self.store.last_error

    @property
    def last_write_ok(self) -> float | None:
        return self.store.last_ok


class Engine:
    def __init__(self, config: Config, sources: dict[str, Source], store: Store,
                 clock: Clock | None = None, *, decider: Decider | None = None,
                 keep: Keep | None = None, on_committed: Callable[[], None] | None = None,
                 past_values: PastValues | None = None):
        """`keep` stores a decision's incident snapshots and mode changes with its batch;
        `on_committed` is called when stored notifications wait to be sent (the outbox);
        `past_values` gives a forecast its window's values from before the start (the
        store's per-minute history by default)."""
        self.config = config
        self.sources = sources
        self.store = store
        self.clock = clock or SystemClock()
        self.decider: Decider = decider or NoNotifications()
        self.keep = keep
        self.on_committed = on_committed
        self.past_values = past_values or stored_values(store)
        self.runtimes: dict[str, Runtime] = {}
        self.by_address: dict[tuple[str, str], list[Runtime]] = {}
        # the same, by source then address: the hot path looks up without building a tuple
        self._by_source: dict[str, dict[str, list[Runtime]]] = {}
        self.readers: dict[str, list[Runtime]] = {}  # check id -> checks whose `when:` read it
        self.history = MinuteHistory()
        self._pending: list[tuple[Transition, AlarmState]] = []
        self._decided: list[Decision] = []  # decided with no transition (ticks, mode, start)
        self.writer = BatchWriter(store, self.write, self.clock.now, self._committed)
        self.stats = EngineStats(store=self.writer.stats)
        self.mode_address = config.modes.from_pv
        self._last_mode: str | None = None
        self._flush_scheduled = False
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="beamwatch-store")
        self._build(config, self.store.load_states())

    # -- set-up and reload ----------------------------------------------------------------

    def restore_states(self) -> None:
        """Take the stored alarm states again (blocking): an HA standby built its checks
        when it started, and the leader it takes over from has changed them since.
        Only what the leader changed is new: each check's alarm logic and what it
        remembers of its input; the compiled checks stay (rebuilding 100k of them was
        most of a takeover's seconds)."""
        states = self.store.load_states()
        now = self.clock.now()
        for rt in self.runtimes.values():
            rt.logic = self._logic(rt.check.config, states.get(rt.check.id))
            rt.input = CheckInput(started=now)  # "never connected" counts from the takeover
            rt.last_eval, rt.dirty, rt.stored, rt.stored_at = None, False, None, float("-inf")
            self._trend(rt, now)  # a forecast's window: the leader's values up to now

    def _build(self, config: Config, states: dict[str, AlarmState]) -> None:
        now = self.clock.now()
        ids = CheckNames(config.check_ids)
        for cfg in config.checks:
            self.runtimes[cfg.id] = self._runtime(cfg, ids, states.get(cfg.id), now)
        self._index()

    def _runtime(self, cfg: CheckConfig, ids: CheckNames, state: AlarmState | None,
                 now: float) -> Runtime:
        rt = Runtime(Check(cfg, ids, self.config.timezone), self._logic(cfg, state),
                     CheckInput(started=now),
                     address=cfg.input_address, source=cfg.input_source)
        self._trend(rt, now)
        return rt

    @staticmethod
    def _logic(cfg: CheckConfig, state: AlarmState | None) -> AlarmLogic:
        count = (cfg.count.times, cfg.count.within) if cfg.count else None
        return AlarmLogic(cfg.id, cfg.for_, cfg.latch, state, count)

    def _trend(self, rt: Runtime, now: float) -> None:
        """A check with forecast: keeps its recent values, starting from the past ones."""
        rule = rt.check.forecast
        trend = rt.input.trend
        if rule is None:
            rt.input.trend = None
        elif trend is None or trend.window != rule.config.window:
            rt.input.trend = rule.new_trend()
            rt.input.prediction = None
            window = rule.config.window
            rt.input.trend.seed(self.past_values(rt.check.id, now - window, now))

    def _index(self) -> None:
        self.by_address = {}
        self.readers = {}
        self._by_source = {}
        for rt in self.runtimes.values():
            self.by_address.setdefault((rt.source, rt.address), []).append(rt)
            self._by_source.setdefault(rt.source, {}).setdefault(rt.address, []).append(rt)
            for read in rt.check.reads:
                self.readers.setdefault(read, []).append(rt)
        for rt in self.runtimes.values():
            rt.quick = rt.check.ok_band if rt.check.id not in self.readers else None
            rt.timed = rt.check.config.stale is not None or rt.input.trend is not None

    def addresses(self) -> dict[str, set[str]]:
        out: dict[str, set[str]] = {}
        for source, address in self.by_address:
            out.setdefault(source, set()).add(address)
        if self.config.modes.from_pv:
            out.setdefault("ca", set()).add(self.config.modes.from_pv)
        return out

    def sample_of(self, check_id: str) -> Sample | None:
        rt = self.runtimes.get(check_id)
        return rt.input.sample if rt else None

    def state_of(self, check_id: str) -> AlarmState | None:
        rt = self.runtimes.get(check_id)
        return rt.logic.state if rt else None

    async def start(self) -> None:
        for name, addrs in self.addresses().items():
            if name == "internal" and name not in self.sources:
                continue  # no self-monitor (an engine outside `run`): those checks wait
            src = self.sources[name]
            src.subscribe(sorted(addrs))
            await src.start(self.source_sink(name))

    async def warm(self) -> None:
        """Standing by: connect the sources that can keep their newest samples until
        `start` (Subscriptions.warm), so that taking over does not wait for them."""
        for name, addrs in self.addresses().items():
            src = self.sources.get(name)
            warm = getattr(src, "warm", None)
            if warm is not None:
                src.subscribe(sorted(addrs))
                await warm()

    async def stop(self) -> None:
        for src in self.sources.values():
            await src.stop()
        await self.flush(final=True)
        await self.writer.close()
        if self.writer.queue:
            log.error("stopping with %d decided batches unstored (the store is unwritable)",
                      len(self.writer.queue))
        self._writer.shutdown(wait=True)

    def reload(self, config: Config) -> dict[str, list[str]]:
        """Apply a new config: unchanged checks keep everything; changed checks keep their
        alarm state and are re-evaluated under the new rules; removed ones are dropped."""
        now = self.clock.now()
        old = self.runtimes
        before = self.addresses()
        self.config = config  # the new checks are built under its timezone
        ids = CheckNames(config.check_ids)
        report: dict[str, list[str]] = {"added": [], "changed": [], "removed": [], "kept": []}
        new: dict[str, Runtime] = {}
        for cfg in config.checks:
            prev = old.get(cfg.id)
            if prev is not None and prev.check.config == cfg:
                prev.check = Check(cfg, ids, config.timezone)  # other checks' ids may change
                new[cfg.id] = prev
                report["kept"].append(cfg.id)
                continue
            rt = self._runtime(cfg, ids, prev.logic.state if prev else None, now)
            if prev is not None and prev.address == rt.address and prev.source == rt.source:
                trend = rt.input.trend
                rt.input = prev.input
                rt.input.prediction = None  # the limits may have changed
                if trend is not None and (prev.input.trend is None
                                          or prev.input.trend.window != trend.window):
                    rt.input.trend = trend
                elif trend is None:
                    rt.input.trend = None
            new[cfg.id] = rt
            report["changed" if prev else "added"].append(cfg.id)
        report["removed"] = sorted(set(old) - set(new))
        self.config, self.runtimes = config, new
        self.mode_address = config.modes.from_pv
        self._index()
        after = self.addresses()
        for name in set(before) | set(after):
            src = self.sources.get(name)
            if src is None:
                continue
            src.unsubscribe(sorted(before.get(name, set()) - after.get(name, set())))
            src.subscribe(sorted(after.get(name, set()) - before.get(name, set())))
        for cid in report["changed"]:
            self._reevaluate(new[cid], now)
        return report

    # -- the hot path -----------------------------------------------------------------------

    def on_samples(self, batch: list[Sample], source: str = "ca") -> None:
        """The sink: called on the loop's thread with a batch of samples."""
        now = self.clock.now()
        self.stats.batches += 1
        self.stats.samples += len(batch)
        by_source = self.stats.samples_by_source
        by_source[source] = by_source.get(source, 0) + len(batch)
        by_address = self._by_source.get(source, {})
        mode_address = self.mode_address
        history_add = self.history.add
        reevaluate = self._reevaluate
        for sample in batch:
            address = sample.address
            if address == mode_address:
                try:
                    self.queue(self.decider.on_mode_sample(sample, now))
                except Exception:  # the mode stays as it was; the checks still run
                    log.exception("the mode PV's sample %s could not be applied", address)
            for rt in by_address.get(address, ()):
                # each check is its own failure domain: CA does not resend an unchanged
                # PV, so a sample dropped here would stay unjudged until it changed
                try:
                    if rt.quick is not None and _quiet(rt, sample):
                        # most samples: an OK check gets a float inside its limits; its
                        # verdict and alarm state stay as they are, so they are not
                        # rebuilt (a third of the engine's CPU per sample)
                        inp = rt.input
                        inp.sample, inp.last_update = sample, sample.received
                        inp.disconnected_since = None
                        rt.dirty = True
                        history_add(rt.check.id, sample, now)
                        continue
                    rt.input.update(sample)
                    rt.dirty = True
                    history_add(rt.check.id, sample, now)  # disconnections too
                    reevaluate(rt, now)
                except Exception as e:
                    self._contain(rt, e, now)

    def source_sink(self, source: str) -> Callable[[list[Sample]], None]:
        return lambda batch: self.on_samples(batch, source)

    def _reevaluate(self, rt: Runtime, now: float, depth: int = 0) -> None:
        ev = self._evaluation(rt, now)
        if ev is None:
            return
        readers = self.readers.get(rt.check.id) if depth < 3 else None
        # (whether the value changed matters only to checks whose `when:` reads it)
        changed = readers and (rt.last_eval is None
                               or self._differ(rt.last_eval.value, ev.value))
        rt.last_eval = ev
        transitions = rt.logic.evaluate(ev, now)
        if transitions:
            self._queue(rt, transitions)
        if changed:  # checks whose `when:` reads this value
            for reader in readers:
                try:
                    self._reevaluate(reader, now, depth + 1)
                except Exception as e:  # the reader's failure is its own, not this check's
                    self._contain(reader, e, now)

    def _evaluation(self, rt: Runtime, now: float) -> Evaluation | None:
        """The check's verdict. A check that raises is INVALID with the error as its
        message, so a bug in one check is seen and every other check goes on."""
        try:
            if rt.input.sample is None and self._settling(rt.source):
                return None  # its source is still connecting a wave of PVs: no opinion yet
            mode = self.decider.mode(now) if rt.check.in_mode else None
            return rt.check.evaluate(rt.input, now, self._values_for(rt), mode)
        except Exception as e:
            return self._failed(rt, e, now)

    def _settling(self, source: str) -> bool:
        settling = getattr(self.sources.get(source), "settling", None)
        return bool(settling()) if settling is not None else False

    def _failed(self, rt: Runtime, error: Exception, now: float) -> Evaluation:
        """INVALID, saying why. Logged once per check and kind of error: the check fails
        again on every sample and tick, and the log must stay readable."""
        kind = type(error).__name__
        if kind not in rt.input.failures_logged:
            rt.input.failures_logged.add(kind)
            log.error("check %s failed (%s); it stays INVALID until it evaluates again; "
                      "this error is not logged again for it", rt.check.id, kind,
                      exc_info=error)
        why = str(error)[:300] or kind
        sample = rt.input.sample
        return Evaluation(Severity.INVALID, f"check failed: {kind}: {why}",
                          sample.value if sample is not None else None, now)

    def _contain(self, rt: Runtime, error: Exception, now: float) -> None:
        """A failure outside the check's evaluation (its alarm logic, the history): the
        check goes INVALID if its alarm logic still can take that."""
        ev = self._failed(rt, error, now)
        rt.last_eval = ev
        try:
            transitions = rt.logic.evaluate(ev, now)
        except Exception:  # the alarm logic itself is broken: logged above, nothing to add
            return
        if transitions:
            self._queue(rt, transitions)

    @staticmethod
    def _differ(old: Any, new: Any) -> bool:
        try:
            return bool(old != new)
        except Exception:  # an array-like whose != has no single truth: call it changed
            return True

    def _values_for(self, rt: Runtime) -> dict[str, Any]:
        if not rt.check.reads:
            return {}
        out = {}
        for cid in rt.check.reads:
            other = self.runtimes.get(cid)
            sample = other.input.sample if other else None
            out[cid] = sample.value if sample is not None and sample.connected else None
        return out

    def _queue(self, rt: Runtime, transitions: list[Transition]) -> None:
        state = rt.logic.state
        for tr in transitions:
            self._pending.append((tr, state))
        self.stats.transitions += len(transitions)
        self._schedule_flush()

    def _schedule_flush(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._spawn_flush)

    def _spawn_flush(self) -> None:
        task = asyncio.ensure_future(self.flush())
        task.add_done_callback(_log_failure)

    # -- time passing ---------------------------------------------------------------------

    def tick(self) -> None:
        """Once a second: staleness, disconnect grace, `for:` delays."""
        now = self.clock.now()
        mode = self.decider.mode(now)
        mode_changed, self._last_mode = mode != self._last_mode, mode
        for rt in self.runtimes.values():
            try:  # a check that raises must not skip the later ones, the decider or commands
                if _time_sensitive(rt) or (mode_changed and rt.check.in_mode):
                    self._reevaluate(rt, now)
                if rt.logic.state.pending is None:  # no delay running (most checks)
                    continue
                transitions = rt.logic.tick(now)
                if transitions:
                    self._queue(rt, transitions)
            except Exception as e:
                self._contain(rt, e, now)
        # What was judged since the last flush (a recovery just in) is decided before the
        # decider's own tick settles held alarms: else a hold that ended in the second
        # the fault cleared opened an incident for a fault already over, and paged it.
        self.decide_pending()
        self.queue(self.decider.tick(now))

    def use(self, decider: Decider) -> None:
        """Decide with `decider` from now on (at start, and on reload: the new one has
        taken over the old one's state, see paging.decide.Decider.take_over)."""
        self.decider = decider

    def queue(self, decision: Decision | None) -> None:
        """A decision with no transition of its own (a tick, the mode, start-up, a
        silence reminder): stored with the next batch."""
        if decision:
            self._decided.append(decision)
            self._schedule_flush()

    def queue_rows(self, rows: list[dict]) -> None:
        """Notifications decided outside the Decider (silence reminders)."""
        self.queue(Decision(rows=rows))

    def acknowledge(self, check_id: str, who: str) -> list[Transition]:
        rt = self.runtimes.get(check_id)
        if rt is None:
            raise KeyError(check_id)
        transitions = rt.logic.acknowledge(who, self.clock.now())
        if transitions:
            self._queue(rt, transitions)
        return transitions

    # -- writing ----------------------------------------------------------------------------

    async def write(self, fn: Callable, *args) -> Any:
        """Run a store call on the single writer thread (ordered, off the loop)."""
        return await asyncio.get_running_loop().run_in_executor(self._writer, fn, *args)

    async def flush(self, final: bool = False) -> None:
        """Decide on queued transitions now, then store them with their notifications
        (the outbox is woken once they are committed). Deciding never waits for the store:
        a store that is down or locked delays only the writing, which the BatchWriter
        retries in order; nothing is notified before it is stored."""
        self._flush_scheduled = False
        self.decide_pending()
        await self.writer.drain(attempts=3 if final else 1)
        if final:
            await self.flush_values(final)

    def decide_pending(self) -> None:
        """Mute, route and annotate what happened since the last call; queue it to store."""
        items, self._pending = self._pending, []
        queued, self._decided = self._decided, []
        if not (items or queued):
            return
        now = self.clock.now()
        transitions = [tr for tr, _ in items]
        try:
            decision = self.decider.decide(transitions, now) if items else Decision()
        except Exception:  # a bug in routing or muting: still log what happened
            log.exception("deciding notifications failed; the transitions are stored "
                          "without them")
            decision = Decision(transitions=transitions)
        for other in queued:
            decision.absorb(other)
        rows = [(tr, st) for tr, (_, st) in zip(decision.transitions, items, strict=True)]
        self.writer.put(Batch(rows + decision.fates, decision.rows, self._keeping(decision, now)))

    def _committed(self, notified: bool) -> None:
        if notified and self.on_committed:
            self.on_committed()

    def _keeping(self, decision: Decision, now: float) -> Callable | None:
        """What of the decision `keep` stores in the batch's transaction, if anything."""
        if self.keep is None or not (decision.incidents or decision.mode_changes):
            return None
        keep = self.keep
        return lambda conn: keep(decision, now, conn)

    async def flush_values(self, final: bool = False) -> None:
        """Latest values (for status) and finished minutes of history.

        A check's latest row is written when its severity, connection or message (but
        the "OK (value)" of a quiet check) changed, otherwise at most every
        `refresh` seconds (VALUE_REFRESH, longer past REFRESH_ROWS rows a second: 100k
        checks refresh every 100 s): at 10k PVs x 2 Hz writing every new value was a
        third of the engine's CPU (decision 0013). This process's own API reads values
        live (`live_value`); other readers see them that fresh."""
        now = self.clock.now()
        # first, as it yields: a cancel there must find no check marked stored
        rows = await self.history.take_sliced(now, everything=final)
        refresh = max(VALUE_REFRESH, len(self.runtimes) / REFRESH_ROWS)
        latest, written = [], []
        for rt in self.runtimes.values():
            if not rt.dirty:
                continue
            key = _stored_key(rt)
            if key is None or (not final and key == rt.stored
                               and now - rt.stored_at < refresh):
                continue
            rt.dirty = False
            rt.stored, rt.stored_at = key, now
            latest.append(self._latest(rt))
            written.append(rt)
        try:
            await self._store_chunks(self.store.save_latest, latest, "latest values")
            await self._store_chunks(self.store.save_history, rows, "history")
        finally:  # what is left was not stored: tried again (at stop by the final flush)
            for rt in written[len(written) - len(latest):]:
                rt.dirty, rt.stored = True, None
            self.history.put_back(rows)

    async def _store_chunks(self, fn: Callable, rows: list, what: str) -> None:
        """Store rows WRITE_CHUNK per transaction, deleting each chunk from `rows` once
        it is stored: an outage stops it (the writer logs it) with the rest in `rows`."""
        try:
            while rows:
                await self.write(fn, rows[:WRITE_CHUNK])
                del rows[:WRITE_CHUNK]
        except Exception as e:
            log.debug("storing %s failed: %s", what, describe(e))

    def live_value(self, check_id: str) -> LatestValue | None:
        """The check's latest value as this process has it now (the store's row may be
        up to VALUE_REFRESH seconds older)."""
        rt = self.runtimes.get(check_id)
        if rt is None or rt.input.sample is None:
            return None
        return self._latest(rt)

    @staticmethod
    def _latest(rt: Runtime) -> LatestValue:
        s = rt.input.sample
        ev = rt.last_eval
        if ev is None:
            return LatestValue(rt.check.id, s.received, s.value, Severity.OK, s.connected,
                               s.server, s.error)
        # a quiet sample (on_samples) kept the last verdict: OK, about an older value
        message = rt.check.ok_text(s.value) if _says_its_value(rt) else ev.message
        return LatestValue(rt.check.id, s.received, s.value, ev.severity, s.connected,
                           s.server, message)


def _quiet(rt: Runtime, sample: Sample) -> bool:
    """A sample that cannot change the check's verdict or alarm state: a float inside the
    OK band of a check that is OK, has nothing pending and was judged before."""
    value = sample.value
    if type(value) is not float or not sample.connected or sample.__class__ is not Sample:
        return False
    low, high = rt.quick
    if not low <= value <= high:
        return False
    state = rt.logic.state
    return state.current == Severity.OK and state.pending is None and \
        rt.input.threshold_severity == Severity.OK and rt.last_eval is not None and \
        rt.last_eval.severity == Severity.OK


def _stored_key(rt: Runtime) -> tuple | None:
    """What of a check's latest value is news when it changes: severity, connection and
    message, but the "OK (value)" of a quiet check, which only repeats its value."""
    s, ev = rt.input.sample, rt.last_eval
    if s is None:
        return None
    if ev is None:
        return (Severity.OK, s.connected, s.error)
    return (ev.severity, s.connected, None if _says_its_value(rt) else ev.message)


def _says_its_value(rt: Runtime) -> bool:
    """The check's message is "OK (value)" (Check.ok_text): a plain float sample of a
    quick check judged OK."""
    s, ev = rt.input.sample, rt.last_eval
    return rt.quick is not None and ev is not None and ev.severity == Severity.OK \
        and s is not None and type(s.value) is float and s.connected \
        and s.__class__ is Sample


def _time_sensitive(rt: Runtime) -> bool:
    """Checks whose verdict can change with no new sample: staleness, grace periods, and
    forecasts (a PV that stops changing sends nothing, yet its trend flattens)."""
    sample = rt.input.sample
    return rt.timed or sample is None or not sample.connected


def _log_failure(task: asyncio.Task) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("engine flush failed", exc_info=task.exception())
