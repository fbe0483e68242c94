"""The bot's commands: a parsed `Request` from a `Caller` -> a `Reply`.

A thin client of the service layer (`api/`), exactly like the CLI: every
change goes through the same functions (which validate it against the config
and audit it), every read through the same queries. Authorisation is decided
here before anything is done; a refusal is audited and changes nothing.
Store calls are blocking: `run` does them in the bot's own worker threads, so a
slow store never stalls the bot's event handling, and a burst of requests (each
`ack` waits for the engine to apply it) never takes the threads the engine's own
store reads run in (the loop's default executor): that would stall the very
engine the acks wait for.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from .. import timefmt
from ..api import audit, past, people, service
from ..api import noise as noise_api
from ..api.noise import ServiceError
from ..config.schema import Config
from ..routing.oncall import OnCallResolver
from ..store import LatestValue, Store
from . import grammar, plot
from .grammar import COMMANDS, Request
from .replies import EMOJI, Reply, context, error, header, lines, mrkdwn, section
from .roles import Role, refusal

log = logging.getLogger("beamwatch.slack")

MODE_SET_DEFAULT = "8h"  # `mode set` without an end: nothing here lasts for ever
HISTORY_ROWS = 15
WORKERS = 4  # requests handled at once; more wait their turn (Slack has its ack already)


@dataclass(frozen=True)
class Caller:
    user_id: str
    name: str  # as Slack shows them
    person: str | None  # the configured person linked to this Slack id
    role: Role

    @property
    def actor(self) -> str:
        """Who did it, in the log and in messages: the person id; else the Slack name with
        the member id, so that nobody reads "ana" for a Slack user who merely is called so."""
        if self.person:
            return self.person
        return f"{self.name} (slack {self.user_id})" if self.name else f"slack {self.user_id}"


@dataclass(frozen=True)
class Reading:
    """A value read now: `get`."""

    name: str
    value: str
    units: str = ""
    severity: str | None = None  # the record's own alarm severity (EPICS)
    time: float | None = None  # the source's timestamp
    source: str = ""
    note: str = ""


ReadNow = Callable[[str], Awaitable[Reading]]
Recent = Callable[[str], list[dict]]  # a check's per-minute rows not stored yet
Resolver = Callable[[], "OnCallResolver | None"]  # the running engine's, with its calendars
Live = Callable[[str], "LatestValue | None"]  # a check's latest value in the running engine


class Commands:
    def __init__(self, config: Callable[[], Config], store: Store, read_now: ReadNow,
                 clock: Callable[[], float] = time.time, recent: Recent = lambda _: [],
                 resolver: Resolver = lambda: None, live: Live | None = None):
        self.config = config  # the running config (a reload changes it)
        self.live = live  # the engine's own latest values (fresher than the store's)
        self.store = store
        self.read_now = read_now
        self.clock = clock
        self.recent = recent
        self.resolver = resolver
        self.executor = ThreadPoolExecutor(WORKERS, thread_name_prefix="beamwatch-slack")

    async def _blocking(self, fn: Callable, *args):
        return await asyncio.get_running_loop().run_in_executor(
            self.executor, functools.partial(fn, *args))

    async def run(self, request: Request, caller: Caller) -> Reply:
        why = refusal(request.verb, caller.role, caller.person,
                      request.args.get("as") if request.verb == "oncall take" else None)
        if why is not None:
            target = " ".join(str(v) for v in request.args.values() if v)
            await self._blocking(audit.refused, self.store, caller.actor, "slack",
                                 request.verb, target[:300], why, self.clock())
            log.info("slack: refused %s for %s: %s", request.verb, caller.user_id, why)
            return error(f"Not done: {why}.")
        try:
            if request.verb == "get":
                return await self._get(request.args["name"])
            handler = getattr(self, "_" + request.verb.replace(" ", "_"))
            return await self._blocking(handler, request.args, caller)
        except ServiceError as e:
            return error(e.message, f"usage: {COMMANDS[request.verb].usage}")

    # --- reads ---------------------------------------------------------------------------

    def _help(self, args: dict, caller: Caller) -> Reply:
        topic = args.get("topic")
        if args.get("asked") and not topic:
            return error(f"no command `{args['asked']}`", grammar.help_text())
        text = grammar.help_text(topic)
        return Reply(text, [section(text)] + ([] if topic else [context(
            f"you are a {caller.role}" + (f", linked to {caller.person}" if caller.person
                                          else ", not linked to a configured person"))]))

    def _status(self, args: dict, caller: Caller) -> Reply:
        cfg = self.config()
        group = args.get("group")
        rows = service.status(cfg, self.store, self.live)
        groups = {c.group for c in cfg.checks}
        if group is not None and group not in groups:
            raise ServiceError(f"no group '{group}'; groups: {', '.join(sorted(groups))}")
        shown = [r for r in rows if r.group == group] if group else [
            r for r in rows if r.severity != "OK"]
        now = self.clock()
        alarms = sum(r.severity != "OK" for r in rows)
        mode = noise_api.mode_status(cfg, self.store, now)
        title = f"{cfg.beamline}: {alarms} in alarm · mode {mode.mode}"
        blocks = [header(title)]
        if not service.engine_alive(self.store, now):
            blocks.append(section(":warning: *beamwatch run is not running*: this is the "
                                  "last state it stored"))
        body = [_status_line(r, now) for r in shown]
        if not body:
            body = [f"{EMOJI['OK']} all {len(rows)} checks OK" if not group
                    else f"no checks in group {group}"]
        blocks.append(section(lines(body, more="(status GROUP shows one group)")))
        return Reply(title, blocks)

    async def _get(self, name: str) -> Reply:
        cfg = self.config()
        try:
            r = await self.read_now(name)
        except LookupError as e:
            hint = noise_api._did_you_mean(name, cfg.check_ids)
            return error(f"{e.args[0] if e.args else 'not found'}{hint}",
                         f"usage: {COMMANDS['get'].usage}")
        units = f" {mrkdwn(r.units)}" if r.units else ""
        sev = f" · {EMOJI.get(r.severity, '')} {r.severity}" if r.severity else ""
        age = f" · {timefmt.ago(r.time, self.clock())} old" if r.time else ""
        text = f"*{mrkdwn(r.name)}* = `{mrkdwn(r.value)}`{units}{sev}{age}"
        note = f"{r.source}" + (f" · {r.note}" if r.note else "")
        return Reply(text, [section(text), context(mrkdwn(note))])

    def _history(self, args: dict, caller: Caller) -> Reply:
        cfg = self.config()
        check = args["check"]
        if check not in cfg.check_ids:
            raise ServiceError(f"unknown check '{check}'"
                               f"{noise_api._did_you_mean(check, cfg.check_ids)}")
        now = self.clock()
        since = now - args["since"]
        rows = service.history(self.store, since, check)
        tz = cfg.timezone
        items = [_history_line(r, tz) for r in rows[-HISTORY_ROWS:]]
        span = timefmt.format_duration(args["since"])
        title = f"{check}: last {span}"
        text = lines(items, HISTORY_ROWS) if items else "no transitions in that time"
        if len(rows) > HISTORY_ROWS:
            text = f"… {len(rows) - HISTORY_ROWS} earlier\n" + text
        # stored minutes (and the current one), archived ones before them if configured
        values = past.values(cfg, self.store, check, since, now, self.recent(check))
        image = plot.png(f"{cfg.check(check).title} ({check}), {tz}", values.rows, rows, tz,
                         since, now)
        blocks = [header(title), section(text)]
        if image is None:
            blocks.append(context("no numeric values stored in that time: no plot"))
        if values.archive:
            blocks.append(context(mrkdwn(values.archive)))
        return Reply(f"{title}\n{text}", blocks, png=image, png_name=f"{check}.png")

    def _incidents(self, args: dict, caller: Caller) -> Reply:
        views = service.incidents(self.store)
        if not views:
            return Reply(f"{EMOJI['OK']} no open incidents")
        tz = self.config().timezone
        out = []
        for v in views:
            acked = f" · acked by {mrkdwn(v.acked_by)}" if v.acked_by else " · *not acked*"
            also = (f"\n    caused: {', '.join(v.consequences[:8])}"
                    + (f" +{len(v.consequences) - 8}" if len(v.consequences) > 8 else "")
                    if v.consequences else "")
            told = f"\n    told: {', '.join(v.told)}" if v.told else "\n    told: nobody yet"
            out.append(f"{EMOJI.get(v.severity, '')} *{mrkdwn(v.title)}* `{v.id}` since "
                       f"{timefmt.show(v.opened, tz, seconds=False)}{acked}{also}{told}")
        return Reply(f"{len(views)} open incidents",
                     [header(f"{len(views)} open incidents"), section(lines(out, 10))])

    def _silences(self, args: dict, caller: Caller) -> Reply:
        cfg = self.config()
        views = noise_api.silences(cfg, self.store, self.clock())
        if not views:
            return Reply("no silences in force")
        tz = cfg.timezone
        out = [f"#{v.silence.id} {', '.join(map(str, v.silence.matchers))} until "
               f"{timefmt.show(v.silence.end, tz, seconds=False)} by "
               f"{mrkdwn(v.silence.author)}: {mrkdwn(v.silence.reason)}"
               + (" (starts later)" if v.state == "pending" else "") for v in views]
        return Reply("\n".join(out), [section(lines(out))])

    def _mode(self, args: dict, caller: Caller) -> Reply:
        info = noise_api.mode_status(self.config(), self.store, self.clock())
        text = f"mode *{info.mode}* ({info.source}) — {mrkdwn(info.note)}"
        return Reply(text, [section(text), context(f"modes: {', '.join(info.modes)}")])

    def _oncall(self, args: dict, caller: Caller) -> Reply:
        cfg = self.config()
        answers = people.oncall(cfg, self.store, self.clock(), self.resolver())
        if not answers:
            return Reply("no team has a rota, a calendar or overrides")
        out = [f"*{a.team}*: {a.person or '*NOBODY*'}"
               + (f" until {timefmt.show(a.until, cfg.timezone, seconds=False)}"
                  if a.until else "") + f" _({mrkdwn(a.reason)})_" for a in answers]
        return Reply("\n".join(out), [section(lines(out))])

    def _subscriptions(self, args: dict, caller: Caller) -> Reply:
        subs = people.subscriptions(self.config(), self.store, caller.person)
        text = "you follow:\n" + "\n".join(f"• {s}" for s in people.describe(subs)) if subs \
            else "you follow nothing by subscription (routes may still call you)"
        return Reply(text)

    # --- changes: public, so the channel sees who did what -----------------------------

    def _ack(self, args: dict, caller: Caller) -> Reply:
        cfg = self.config()
        check = service.ack_target(cfg, self.store, args["target"])
        result = service.acknowledge(cfg, self.store, check, caller.actor, via="slack")
        if not result.ok:
            raise ServiceError(result.message)
        return Reply(f":white_check_mark: {mrkdwn(result.message)} — {caller.actor}",
                     public=True)

    def _silence(self, args: dict, caller: Caller) -> Reply:
        cfg = self.config()
        now = self.clock()
        s = noise_api.silence(cfg, self.store, args["matchers"], duration=args["duration"],
                              author=caller.actor, reason=args["reason"], now=now, via="slack")
        covers = noise_api.covered_checks(cfg, s.matchers)
        text = (f":no_bell: *{mrkdwn(caller.actor)}* silenced "
                f"`{', '.join(map(str, s.matchers))}` until "
                f"{timefmt.show(s.end, cfg.timezone, seconds=False)} (silence #{s.id}): "
                f"{mrkdwn(s.reason)}")
        return Reply(text, [section(text), context(f"covers {len(covers)} checks: "
                                                   f"{', '.join(covers[:10])}")], public=True)

    def _unsilence(self, args: dict, caller: Caller) -> Reply:
        cfg = self.config()
        s = noise_api.unsilence(self.store, args["id"], caller.actor, self.clock(),
                                tz=cfg.timezone, via="slack")
        return Reply(f":bell: *{mrkdwn(caller.actor)}* ended silence #{s.id} "
                     f"(`{', '.join(map(str, s.matchers))}`)", public=True)

    def _mode_set(self, args: dict, caller: Caller) -> Reply:
        cfg = self.config()
        duration = args["for"] or (None if args["until"] else MODE_SET_DEFAULT)
        ov = noise_api.set_mode(cfg, self.store, args["mode"], for_=duration,
                                until=args["until"], author=caller.actor,
                                reason=args["reason"], now=self.clock(), via="slack")
        default = " (the default length: say `for 2h` or `until 18:00`)" \
            if duration == MODE_SET_DEFAULT and not args["for"] else ""
        return Reply(f":arrows_counterclockwise: *{mrkdwn(caller.actor)}* set the mode to "
                     f"*{ov.mode}* until {timefmt.show(ov.until, cfg.timezone, seconds=False)}"
                     f"{default}: {mrkdwn(ov.reason)}", public=True)

    def _mode_clear(self, args: dict, caller: Caller) -> Reply:
        ov = noise_api.clear_mode(self.store, caller.actor, self.clock(), via="slack")
        if ov is None:
            return Reply("there was no mode override; nothing changed")
        return Reply(f":arrows_counterclockwise: *{mrkdwn(caller.actor)}* ended the override "
                     f"to *{ov.mode}*", public=True)

    def _oncall_take(self, args: dict, caller: Caller) -> Reply:
        text = people.take_oncall(self.config(), self.store, args["as"] or caller.person,
                                  args["team"], args["for"], actor=caller.actor, via="slack",
                                  now=self.clock(), running=self.resolver())
        return Reply(f":telephone_receiver: {mrkdwn(text)} (by {mrkdwn(caller.actor)})",
                     public=True)

    def _subscribe(self, args: dict, caller: Caller) -> Reply:
        return Reply(people.subscribe(self.config(), self.store, caller.person, args["target"],
                                      args["severity"], actor=caller.actor, via="slack",
                                      now=self.clock()))

    def _unsubscribe(self, args: dict, caller: Caller) -> Reply:
        return Reply(people.unsubscribe(self.config(), self.store, caller.person,
                                        args["target"], actor=caller.actor, via="slack",
                                        now=self.clock()))

    def _quiet(self, args: dict, caller: Caller) -> Reply:
        return Reply(people.set_quiet(self.config(), self.store, caller.person, args["hours"],
                                      actor=caller.actor, via="slack", now=self.clock()))


def _status_line(r: service.CheckStatus, now: float) -> str:
    sev = r.severity + (f" (acked by {mrkdwn(r.acked_by)})" if r.acked else "")
    muted = f" _(muted {r.muted})_" if r.muted else ""
    since = f" · {timefmt.ago(r.since, now)}" if r.since and r.severity != "OK" else ""
    value = f" = `{mrkdwn(r.value_text)}`" if r.value_text not in ("", "—") else ""
    why = f" — {mrkdwn(r.message)}" if r.message and r.severity != "OK" else ""
    return f"{EMOJI.get(r.severity, '')} *{r.id}* {sev}{value}{why}{since}{muted}"


def _history_line(r: dict, tz: str) -> str:
    at = timefmt.show(r["time"], tz, seconds=False)
    if r["kind"] == "audit":
        entry = audit.AuditEntry(**{k: v for k, v in r.items() if k != "kind"})
        return f"`{at}` {mrkdwn(audit.sentence(entry))}"
    change = f"{r['old']} → {EMOJI.get(r['new'], '')} {r['new']}"
    if r["reason"] == "ack":
        change = f":white_check_mark: acked by {mrkdwn(r['actor'])}"
    return f"`{at}` {change} {mrkdwn(r['message'])}"
