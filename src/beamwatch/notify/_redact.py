"""Keep secrets out of Delivery details and out of every log record.

Notifiers register the secret strings they hold (tokens, passwords, webhook
URLs, the private parts of Apprise URLs). `redact()` replaces them with
<secret>. A logging filter does the same on the loggers of the libraries we
drive (apprise, urllib3, httpx, slack_sdk) and on beamwatch.notify, because
those libraries may log a URL with a token in it (a Slack or Telegram webhook
path) at DEBUG or INFO.
"""

from __future__ import annotations

import logging
import re
import threading
import traceback
from collections.abc import Iterable
from urllib.parse import parse_qsl, unquote, urlsplit

from ..config.types import Secret

MASK = "<secret>"
MIN_LENGTH = 4  # shorter strings would redact ordinary words

_lock = threading.Lock()
_secrets: set[str] = set()
_pattern: re.Pattern[str] | None = None

LOGGERS = (
    "beamwatch.notify",
    "apprise",
    "urllib3.connectionpool",
    "httpx",
    "httpcore",
    "slack_sdk.web.base_client",
    "slack_sdk.web.internal_utils",
    "slack_sdk",
)


def register(*values: str | Secret | None) -> None:
    """Remember secret values (and their URL-quoted forms) for redaction."""
    global _pattern
    new = set()
    for v in values:
        if v is None:
            continue
        text = v.get() if isinstance(v, Secret) else str(v)
        for form in (text, unquote(text)):
            if len(form) >= MIN_LENGTH:
                new.add(form)
    if not new - _secrets:
        return
    with _lock:
        _secrets.update(new)
        ordered = sorted(_secrets, key=len, reverse=True)  # longest first
        _pattern = re.compile("|".join(re.escape(s) for s in ordered))
    install()


def redact(text: str) -> str:
    pattern = _pattern
    if not text or pattern is None:
        return text
    return pattern.sub(MASK, text)


def _looks_random(text: str) -> bool:
    return len(text) >= 16 or (
        len(text) >= 8 and any(c.isdigit() for c in text) and any(c.isalpha() for c in text)
    )


_SECRET_KEY = re.compile(r"token|key|secret|pass|sig|auth|code|cred", re.I)


def url_secrets(url: str, public: str | None = None) -> list[str]:
    """The parts of `url` that may be secret, the whole URL first.

    With `public` (the same URL as its library prints it with privacy, Apprise's
    url(privacy=True)), every part of `url` missing from it is secret. Without
    it: userinfo, values of query keys like token/key/secret/sig, and path or
    query parts that look random (webhook tokens).
    """
    out = [url]
    try:
        parts = urlsplit(url)
    except ValueError:
        return out
    if public is not None:
        shown = set(re.split(r"[/:@?&=#,;\s]+", unquote(public)))
        pieces = [parts.username, parts.password, parts.hostname, parts.fragment]
        pieces += [v for _, v in parse_qsl(parts.query)]
        pieces += parts.path.split("/")
        for p in pieces:
            p = unquote(p or "")
            if len(p) >= MIN_LENGTH and p not in shown:
                out.append(p)
        return out
    out += [p for p in (parts.username, parts.password) if p]
    for key, value in parse_qsl(parts.query):
        if _SECRET_KEY.search(key) or _looks_random(value):
            out.append(value)
    out += [p for p in parts.path.split("/") if _looks_random(unquote(p))]
    return out


class RedactingFilter(logging.Filter):
    """Rewrites a record's message (and traceback text) with secrets masked."""

    def filter(self, record: logging.LogRecord) -> bool:
        if _pattern is None:
            return True
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken record is not ours to fix
            return True
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and record.exc_info[1] is not None and not record.exc_text:
            record.exc_text = redact(
                "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
            )
        return True


_filter = RedactingFilter()


def install(names: Iterable[str] = LOGGERS) -> None:
    """Attach the filter to the loggers libraries write to (idempotent)."""
    for name in names:
        logger = logging.getLogger(name)
        if _filter not in logger.filters:
            logger.addFilter(_filter)
