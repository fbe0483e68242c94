"""Build every notifier from `Config.channels` and `Config.people`.

Destination names:

    channel:NAME          a configured channel
    person:NAME/KIND      one way to reach a person (KIND: email, slack, signal,
                          whatsapp, webhook)

A channel is one notifier:

    kind: webhook               -> WebhookNotifier (webhook_url or url, headers, timeout)
    kind: email                 -> EmailNotifier (smtp_*, sender, to)
    kind: slack                 -> SlackNotifier (token, channel, api_url, timeout)
    kind: alertmanager          -> AlertmanagerNotifier (url, labels, token or
                                   username/password, headers, ends_after, timeout)
    url: slack://xoxb-…/#chan   -> SlackNotifier too (a bot token can update messages)
    url: any other Apprise URL  -> AppriseNotifier

A person's address is delivered with the settings of a channel of the same
kind (the "people channel" for that kind):

    email     -> the email channel's SMTP settings and sender, to the person's address
    slack     -> the slack channel's bot token and api_url, a DM to the member ID (U…)
    signal    -> the signal:// (or signals://) Apprise channel — the
                 signal-cli-rest-api address and sender number — to the person's number
    whatsapp  -> the whatsapp:// Apprise channel — the WhatsApp Cloud API token and
                 phone-number id — to the person's number
    webhook   -> a plain POST to the person's URL (no channel: a channel's
                 headers may be credentials for another host)

When several channels could serve a kind, the one with `people: true` is used
(a ChannelConfig key proposed to the schema; until it exists, only a single
candidate works and several are reported as a problem).
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import Iterator, Mapping
from typing import Any

import httpx

from ..config.schema import ChannelConfig, Config
from ..config.types import Secret
from ..model import Severity
from .alertmanager import AlertmanagerNotifier, CheckInfo
from .apprise_notifier import AppriseNotifier, AppriseUrlError, load_plugin
from .base import Delivery, Message, Notifier
from .email import EmailNotifier, SmtpSettings
from .render import Renderer, TemplateError
from .slack import SlackNotifier
from .webhook import WebhookNotifier

Problem = tuple[tuple[str | int, ...], str]
PERSON_KINDS: tuple[str, ...] = ("email", "slack", "signal", "whatsapp", "webhook")
_SLACK_ID = re.compile(r"^[UWCGD][A-Z0-9]{2,}$")


class NotifyConfigError(ValueError):
    """Channels or people that cannot be turned into notifiers."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("\n".join(f"{_dotted(p)}: {m}" for p, m in problems))


def _dotted(path: tuple[str | int, ...]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


class Registry(Mapping[str, Notifier]):
    """Notifiers by destination name; `person(name)` in the person's order."""

    def __init__(
        self,
        notifiers: dict[str, Notifier],
        people: dict[str, list[str]],
        problems: list[Problem],
        renderer: Renderer | None,
        client: httpx.AsyncClient | None = None,
        people_only: frozenset[str] = frozenset(),
    ):
        self._notifiers = notifiers
        self._people_only = people_only
        self._people = people
        self.problems = problems
        self.renderer = renderer
        self._client = client

    def __getitem__(self, name: str) -> Notifier:
        return self._notifiers[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._notifiers)

    def __len__(self) -> int:
        return len(self._notifiers)

    def channel(self, name: str) -> Notifier:
        return self.resolve(f"channel:{name}")[0]

    def person(self, name: str) -> list[Notifier]:
        """The person's destinations, in their `order:` (else email, slack,
        signal, whatsapp, webhook)."""
        return [self._notifiers[n] for n in self._people.get(name, [])]

    def resolve(self, target: str) -> list[Notifier]:
        """'channel:NAME', 'person:NAME' (all their destinations) or 'person:NAME/KIND'."""
        kind, _, name = target.partition(":")
        if kind not in ("channel", "person") or not name:
            raise KeyError(f"'{target}': give channel:NAME, person:NAME or person:NAME/KIND")
        mine = [
            (p, m) for p, m in self.problems
            if p[:2] == (f"{kind}s" if kind == "channel" else "people", name.split("/")[0])
        ]
        if kind == "person" and "/" not in name:
            found = self.person(name)
        else:
            found = [self._notifiers[target]] if target in self._notifiers else []
        if not found and mine:
            raise NotifyConfigError(mine)
        if not found and kind == "channel" and name in self._people_only:
            raise KeyError(f"channel '{name}' has no to: addresses; it only carries people's "
                           "email (try person:NAME/email)")
        if not found:
            known = sorted(n for n in self._notifiers if n.startswith(f"{kind}:"))
            raise KeyError(f"no destination '{target}' (known: {', '.join(known) or 'none'})")
        return found

    async def aclose(self) -> None:
        for n in self._notifiers.values():
            await n.aclose()
        if self._client is not None:
            await self._client.aclose()


def _scheme(ch: ChannelConfig) -> str | None:
    if ch.url is None:
        return None
    raw = ch.url.get()
    return raw.split("://", 1)[0].lower() if "://" in raw else None


def _slack_bot_url(ch: ChannelConfig) -> tuple[str, str] | None:
    """(bot token, channel) when an Apprise slack:// URL uses a bot token."""
    if (ch.kind or "apprise") != "apprise" or _scheme(ch) != "slack" or ch.url is None:
        return None
    try:
        plugin = load_plugin(ch.url.get())
    except AppriseUrlError:
        return None
    mode = getattr(getattr(plugin, "mode", None), "value", getattr(plugin, "mode", None))
    token = getattr(plugin, "access_token", None)
    channels = list(getattr(plugin, "channels", None) or [])
    if mode == "bot" and token and len(channels) == 1:
        return token, channels[0]
    return None


def _serves(ch: ChannelConfig, kind: str) -> bool:
    """Can this channel's settings deliver to a person's `kind` address?"""
    resolved = ch.kind or "apprise"
    if kind == "email":
        return resolved == "email"
    if kind == "slack":
        return resolved == "slack" or _slack_bot_url(ch) is not None
    if kind == "signal":
        return resolved == "apprise" and _scheme(ch) in ("signal", "signals")
    if kind == "whatsapp":
        return resolved == "apprise" and _scheme(ch) == "whatsapp"
    return False


_EXAMPLES = {
    "email": "channels: {mail: {kind: email, smtp_host: smtp.example.org, "
             "sender: beamwatch@example.org}}",
    "slack": "channels: {slack: {kind: slack, token: ${SLACK_BOT_TOKEN}, channel: '#ops'}}",
    "signal": "channels: {signal: {url: 'signal://signal-api:8080/+441234567890'}} "
              "(the signal-cli-rest-api address and the sender number)",
    "whatsapp": "channels: {whatsapp: {url: 'whatsapp://${WHATSAPP_TOKEN}@PHONE_NUMBER_ID/'}}",
}


def people_channel(config: Config, kind: str) -> tuple[str | None, str | None]:
    """(channel name, None) or (None, why not) for delivering a person's `kind`."""
    candidates = [n for n, ch in config.channels.items() if _serves(ch, kind)]
    marked = [n for n in candidates if getattr(config.channels[n], "people", False)]
    if len(marked) == 1:
        return marked[0], None
    if len(marked) > 1:
        return None, f"several {kind} channels have people: true ({', '.join(marked)})"
    if len(candidates) == 1:
        return candidates[0], None
    if not candidates:
        return None, f"no channel can deliver {kind} to people; add one, e.g. {_EXAMPLES[kind]}"
    return None, (
        f"several channels could deliver {kind} to people ({', '.join(candidates)}); "
        "mark one with people: true"
    )


def _smtp(ch: ChannelConfig) -> SmtpSettings:
    return SmtpSettings(
        host=ch.smtp_host or "", port=ch.smtp_port, sender=ch.sender or "", user=ch.smtp_user,
        password=ch.smtp_password, starttls=ch.smtp_starttls, timeout=ch.timeout,
        ssl=ch.smtp_ssl,
    )


def channel_notifier(
    name: str, ch: ChannelConfig, renderer: Renderer, client: httpx.AsyncClient | None = None,
    checks: Mapping[str, CheckInfo] | None = None,
) -> Notifier:
    """The notifier for one channel; raises ValueError (AppriseUrlError) when unusable.
    `checks`: every check's (group, labels), for the labels of Alertmanager's alerts."""
    full = f"channel:{name}"
    kind = ch.kind or "apprise"
    if kind == "alertmanager":
        assert ch.url is not None  # the schema requires one
        return AlertmanagerNotifier(full, ch.url, checks=checks or {}, labels=ch.labels,
                                    token=ch.token, username=ch.username,
                                    password=ch.password, headers=ch.headers,
                                    ends_after=ch.ends_after, timeout=ch.timeout,
                                    client=client)
    if kind == "webhook":
        url = ch.webhook_url or ch.url
        assert url is not None  # the schema requires one
        return WebhookNotifier(full, url, renderer=renderer, headers=ch.headers,
                               timeout=ch.timeout, client=client)
    if kind == "email":
        return EmailNotifier(full, _smtp(ch), list(ch.to), renderer=renderer)
    if kind == "slack":
        assert ch.token is not None and ch.channel is not None
        return SlackNotifier(full, ch.token, ch.channel, renderer=renderer, api_url=ch.api_url,
                             timeout=ch.timeout)
    bot = _slack_bot_url(ch)
    if bot is not None:
        token, channel = bot
        return SlackNotifier(full, Secret(token), channel, renderer=renderer,
                             api_url=ch.api_url, timeout=ch.timeout)
    assert ch.url is not None
    return AppriseNotifier(full, ch.url, renderer=renderer, timeout=ch.timeout)


def person_notifier(
    person: str, kind: str, address: str, channel: str, ch: ChannelConfig | None,
    renderer: Renderer, client: httpx.AsyncClient | None = None,
) -> Notifier:
    full = f"person:{person}/{kind}"
    if kind == "webhook":
        return WebhookNotifier(full, Secret(address), renderer=renderer, client=client)
    assert ch is not None
    if kind == "email":
        return EmailNotifier(full, _smtp(ch), [address], renderer=renderer)
    if kind == "slack":
        if not _SLACK_ID.match(address):
            raise ValueError(
                f"slack: '{address}' is not a Slack member ID; use the ID like U0123ABC "
                "(Slack profile → ⋮ → Copy member ID)"
            )
        bot = _slack_bot_url(ch)
        token: Secret | str | None = Secret(bot[0]) if bot else ch.token
        assert token is not None
        return SlackNotifier(full, token, address, renderer=renderer, api_url=ch.api_url,
                             timeout=ch.timeout)
    assert ch.url is not None
    return AppriseNotifier(full, ch.url, renderer=renderer, timeout=ch.timeout,
                           targets=[address])


def _build(
    config: Config, renderer: Renderer | None, client: httpx.AsyncClient | None
) -> tuple[dict[str, Notifier], dict[str, list[str]], list[Problem], Renderer | None]:
    problems: list[Problem] = []
    if renderer is None:
        try:
            renderer = Renderer(config.templates)
        except TemplateError as e:
            return {}, {}, [(("templates",), str(e))], None
    notifiers: dict[str, Notifier] = {}
    checks = {c.id: (c.group, dict(c.labels)) for c in config.checks}
    for name, ch in config.channels.items():
        if (ch.kind == "email") and not ch.to:
            continue  # settings for people only; routes to it are reported below
        try:
            notifiers[f"channel:{name}"] = channel_notifier(name, ch, renderer, client, checks)
        except ValueError as e:
            problems.append((("channels", name, "url"), str(e)))
    for i, route in enumerate(config.routes):
        targets = [(("routes", i, "to", j), t) for j, t in enumerate(route.to)]
        for k, esc in enumerate(route.escalations):
            targets += [(("routes", i, "escalate", k, "to", j), t) for j, t in enumerate(esc.to)]
        for path, target in targets:
            kind, _, name = target.partition(":")
            ch = config.channels.get(name)
            if kind == "channel" and ch is not None and ch.kind == "email" and not ch.to:
                problems.append((path, f"channel '{name}' has no to: addresses, so it can only "
                                       "deliver to people"))
    people: dict[str, list[str]] = {}
    chosen: dict[str, tuple[str | None, str | None]] = {}
    for person, p in config.people.items():
        order = list(p.order or PERSON_KINDS)
        order += [k for k in PERSON_KINDS if k not in order]
        names = []
        for kind in order:
            address = getattr(p, kind)
            if not address:
                continue
            channel_name: str | None = None
            if kind != "webhook":
                if kind not in chosen:
                    chosen[kind] = people_channel(config, kind)
                channel_name, why = chosen[kind]
                if channel_name is None:
                    problems.append((("people", person, kind), f"{person}'s {kind}: {why}"))
                    continue
            ch = config.channels.get(channel_name) if channel_name else None
            try:
                n = person_notifier(person, kind, address, channel_name or "", ch, renderer,
                                    client)
            except ValueError as e:
                problems.append((("people", person, kind), str(e)))
                continue
            notifiers[n.name] = n
            names.append(n.name)
        people[person] = names
    if config.slack is not None:  # the bot answers the buttons: every Slack message has them
        for n in notifiers.values():
            if isinstance(n, SlackNotifier):
                n.buttons = True
    return notifiers, people, problems, renderer


def registry_problems(config: Config) -> list[Problem]:
    """Every problem building the notifiers would meet, in the (path, message)
    shape of config.crossref, so `beamwatch check` can report them with lines."""
    return _build(config, None, None)[2]


def build_registry(
    config: Config, *, renderer: Renderer | None = None, strict: bool = True,
    client: httpx.AsyncClient | None = None,
) -> Registry:
    """All notifiers. strict: raise NotifyConfigError on any problem; otherwise
    leave the broken destinations out and keep the problems in `.problems`."""
    own = client is None
    client = client or httpx.AsyncClient(follow_redirects=False)
    notifiers, people, problems, renderer = _build(config, renderer, client)
    if problems and strict:
        if own:
            _close_soon(client)
        raise NotifyConfigError(problems)
    people_only = frozenset(n for n, ch in config.channels.items() if ch.kind == "email"
                            and not ch.to)
    return Registry(notifiers, people, problems, renderer, client if own else None,
                    people_only)


def _close_soon(client: httpx.AsyncClient) -> None:
    try:
        asyncio.get_running_loop().create_task(client.aclose())
    except RuntimeError:
        pass  # no loop: nothing was opened


def make_test_message(config: Config, now: float | None = None) -> Message:
    return Message(
        kind="test",
        beamline=config.beamline,
        title="Test notification",
        severity=Severity.OK,
        dedup_key=f"{config.beamline}/test",
        id=f"test-{uuid.uuid4().hex[:12]}",
        text="If you can read this, beamwatch can reach you here.",
        time=time.time() if now is None else now,
        link=config.web.url,
        timezone=config.timezone,
    )


async def notify_test(
    config: Config, target: str, *, renderer: Renderer | None = None,
    now: float | None = None,
) -> dict[str, Delivery]:
    """Send a real test message to 'channel:NAME', 'person:NAME' (each of their
    destinations) or 'person:NAME/KIND'. Returns the Delivery per destination.

    Raises KeyError for an unknown target and NotifyConfigError when the target
    itself is misconfigured; problems elsewhere in the config do not stop it.
    """
    registry = build_registry(config, renderer=renderer, strict=False)
    try:
        notifiers = registry.resolve(target)
        message = make_test_message(config, now)
        results = await asyncio.gather(*(n.send(message) for n in notifiers))
        return {n.name: d for n, d in zip(notifiers, results, strict=True)}
    finally:
        await registry.aclose()


def describe(registry: Registry) -> list[dict[str, Any]]:
    """Secret-free rows for `beamwatch notify-test --list` or the dashboard."""
    return [
        {"name": n.name, "kind": n.kind, "destination": n.destination}
        for n in registry.values()
    ]
