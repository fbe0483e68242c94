"""What people type to the bot (`/beamwatch …`, a DM, a mention) -> a `Request`.

Pure: no Slack, no store. Input is only ever split into words and matched
against this grammar; nothing typed reaches SQL, a shell or an expression —
the service layer validates ids, matchers and times against the config.
Malformed input raises `Malformed` carrying the help of that command.
"""

from __future__ import annotations

import html
import re
import shlex
from dataclasses import dataclass, field

from ..timefmt import parse_duration

MAX_INPUT = 2000  # characters: a command, not a document


@dataclass(frozen=True)
class Spec:
    usage: str
    summary: str
    example: str


# verb -> how to use it; the order is the order of `help`
COMMANDS: dict[str, Spec] = {
    "status": Spec("status [group]", "every check in alarm, worst first (all of a group)",
                   "status vacuum"),
    "get": Spec("get <check | PV>", "read it now from the source, like caget",
                "get BL04I-EA-DET-01:TEMP"),
    "history": Spec("history <check> [24h]", "its transitions and a plot", "history dcm-temp 6h"),
    "incidents": Spec("incidents", "open incidents: root cause, consequences, who was told",
                      "incidents"),
    "ack": Spec("ack <check | incident>", "acknowledge: stops repeats and escalation",
                "ack fe-vacuum"),
    "silence": Spec("silence <check | group=NAME | matcher…> <duration> <reason…>",
                    "nobody is told for a while; still shown and logged",
                    "silence group=vacuum 2h bake-out of the FE"),
    "silences": Spec("silences", "the silences in force", "silences"),
    "unsilence": Spec("unsilence <id>", "end a silence now", "unsilence 12"),
    "mode": Spec("mode", "the beamline mode, and why", "mode"),
    "mode set": Spec("mode set <name> [for <duration> | until <time>] <reason…>",
                     "force the mode (default for 8h)",
                     "mode set maintenance for 4h vacuum intervention"),
    "mode clear": Spec("mode clear", "end the override: the PV or schedule decides again",
                       "mode clear"),
    "oncall": Spec("oncall", "who is on call for each team, until when", "oncall"),
    "oncall take": Spec("oncall take [team] [for <duration>] [as <person>]",
                        "you are on call (default: the rest of the shift)",
                        "oncall take mx-support for 4h"),
    "subscribe": Spec("subscribe <group | check | all> [minor | major | invalid]",
                      "be told about it yourself, at this severity and worse",
                      "subscribe cryo major"),
    "unsubscribe": Spec("unsubscribe <group | check | all>", "stop following it",
                        "unsubscribe cryo"),
    "subscriptions": Spec("subscriptions", "what you follow", "subscriptions"),
    "quiet": Spec("quiet <HH:MM-HH:MM | off | reset>",
                  "your quiet hours: only MAJOR and worse then", "quiet 22:00-07:00"),
    "help": Spec("help [command]", "this list, or one command", "help silence"),
}
SUBVERBS = {"mode": ("set", "clear"), "oncall": ("take",)}
SEVERITIES = ("minor", "major", "invalid")
_MENTION = re.compile(r"^\s*<@[A-Z0-9]+(?:\|[^>]*)?>[:,]?\s*")
_LINK = re.compile(r"<(?:mailto:|https?://)[^|>]*\|([^>]*)>|<(?:https?://)([^>]*)>")
_QUOTES = str.maketrans({"“": '"', "”": '"', "‘": "'", "’": "'"})


class Malformed(Exception):
    """Input that does not fit a command; `verb` says whose help to show (None: all)."""

    def __init__(self, message: str, verb: str | None = None):
        super().__init__(message)
        self.message = message
        self.verb = verb


@dataclass(frozen=True)
class Request:
    verb: str  # a key of COMMANDS
    args: dict = field(default_factory=dict)


def help_text(verb: str | None = None) -> str:
    if verb in COMMANDS:
        s = COMMANDS[verb]
        return f"`{s.usage}`\n{s.summary}\nexample: `{s.example}`"
    return "\n".join(f"`{s.usage}` — {s.summary}" for s in COMMANDS.values())


def clean(text: str) -> str:
    """Slack's markup off: the bot's mention, <links|label>, &amp; escapes, smart quotes."""
    text = _MENTION.sub("", text or "", count=1)
    text = _LINK.sub(lambda m: m.group(1) or m.group(2), text)
    return html.unescape(text).translate(_QUOTES).strip()


def words(text: str) -> list[str]:
    try:
        return shlex.split(text)
    except ValueError:  # an unbalanced quote: plain words
        return text.split()


def parse(text: str) -> Request:
    text = clean(text)
    if len(text) > MAX_INPUT:
        raise Malformed(f"that is {len(text)} characters; a command is at most {MAX_INPUT}")
    w = words(text)
    if not w:
        return Request("help")
    verb, rest = w[0].lower(), w[1:]
    if verb in SUBVERBS and rest and rest[0].lower() in SUBVERBS[verb]:
        verb, rest = f"{verb} {rest[0].lower()}", rest[1:]
    elif verb in SUBVERBS and rest:
        raise Malformed(f"`{verb} {rest[0]}`: did you mean "
                        f"{' or '.join(f'`{verb} {s}`' for s in SUBVERBS[verb])}?", verb)
    parser = _PARSERS.get(verb)
    if parser is None:
        raise Malformed(f"I don't know `{w[0][:40]}`.")
    return Request(verb, parser(verb, rest))


def _none(verb: str, rest: list[str]) -> dict:
    if rest:
        raise Malformed(f"`{verb}` takes nothing after it", verb)
    return {}


def _one(name: str, optional: bool = False):
    def parse_one(verb: str, rest: list[str]) -> dict:
        if len(rest) > 1 or (not rest and not optional):
            raise Malformed(f"`{verb}` takes {'at most ' if optional else ''}one {name}", verb)
        return {name: rest[0] if rest else None}
    return parse_one


def _duration(text: str) -> float | None:
    try:
        seconds = parse_duration(text)
    except ValueError:
        return None
    return seconds if seconds > 0 else None


def _history(verb: str, rest: list[str]) -> dict:
    if not 1 <= len(rest) <= 2:
        raise Malformed("`history` takes a check and optionally how far back", verb)
    since = 86400.0
    if len(rest) == 2:
        since = _duration(rest[1].removeprefix("last").strip() or "x") or -1
        if since <= 0:
            raise Malformed(f"`{rest[1]}` is not a duration like 6h or 3d", verb)
    return {"check": rest[0], "since": since}


def _silence(verb: str, rest: list[str]) -> dict:
    """Targets up to the first duration (`for` before it is optional), then the reason."""
    for i, word in enumerate(rest):
        if word.lower() == "for" and i + 1 < len(rest) and _duration(rest[i + 1]):
            targets, duration, reason = rest[:i], rest[i + 1], rest[i + 2:]
            break
        if _duration(word):
            targets, duration, reason = rest[:i], word, rest[i + 1:]
            break
    else:
        raise Malformed("say for how long, e.g. 2h, before the reason", verb)
    if not targets:
        raise Malformed("say what to silence: a check, group=NAME or matchers", verb)
    if not reason:
        raise Malformed("a silence needs a reason after the duration", verb)
    return {"matchers": targets, "duration": duration, "reason": " ".join(reason)}


def _mode_set(verb: str, rest: list[str]) -> dict:
    if not rest:
        raise Malformed("say which mode", verb)
    name, rest = rest[0], rest[1:]
    duration = until = None
    if len(rest) >= 2 and rest[0].lower() == "for":
        duration, rest = rest[1], rest[2:]
        if not _duration(duration):
            raise Malformed(f"`{duration}` is not a duration like 4h", verb)
    elif len(rest) >= 2 and rest[0].lower() == "until":
        until, rest = rest[1], rest[2:]
    if not rest:
        raise Malformed("a mode override needs a reason", verb)
    return {"mode": name, "for": duration, "until": until, "reason": " ".join(rest)}


def _oncall_take(verb: str, rest: list[str]) -> dict:
    out: dict = {"team": None, "for": None, "as": None}
    i = 0
    while i < len(rest):
        word = rest[i].lower()
        if word in ("for", "as") and i + 1 < len(rest):
            out[word] = rest[i + 1]
            i += 2
            continue
        if out["team"] is None and word not in ("for", "as"):
            out["team"] = rest[i]
            i += 1
            continue
        raise Malformed(f"`{rest[i]}` is not understood here", verb)
    if out["for"] is not None and not _duration(out["for"]):
        raise Malformed(f"`{out['for']}` is not a duration like 4h", verb)
    return out


def _subscribe(verb: str, rest: list[str]) -> dict:
    if not 1 <= len(rest) <= 2:
        raise Malformed("say what to follow and, if you like, from which severity", verb)
    severity = rest[1].lower() if len(rest) == 2 else "minor"
    if severity not in SEVERITIES:
        raise Malformed(f"`{rest[1]}` is not a severity: {', '.join(SEVERITIES)}", verb)
    return {"target": rest[0], "severity": severity}


def _quiet(verb: str, rest: list[str]) -> dict:
    if len(rest) != 1 and not (len(rest) == 3 and rest[1] in ("-", "–")):
        raise Malformed("say HH:MM-HH:MM, off or reset", verb)
    return {"hours": "".join(rest)}


def _help(verb: str, rest: list[str]) -> dict:
    topic = " ".join(rest).lower() or None
    return {"topic": topic if topic in COMMANDS else None, "asked": topic}


_PARSERS = {
    "status": _one("group", optional=True), "get": _one("name"), "history": _history,
    "incidents": _none, "ack": _one("target"), "silence": _silence, "silences": _none,
    "unsilence": _one("id"), "mode": _none, "mode set": _mode_set, "mode clear": _none,
    "oncall": _none, "oncall take": _oncall_take, "subscribe": _subscribe,
    "unsubscribe": _one("target"), "subscriptions": _none, "quiet": _quiet, "help": _help,
}
