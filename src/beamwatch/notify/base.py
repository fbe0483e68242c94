"""The delivery interface: one rendered `Message` to one destination -> one `Delivery`.

A `Notifier` never raises for a transport problem. It says what happened in a
`Delivery`: sent (with a `ref` to thread later messages on), or failed with an
`ErrorKind` that decides whether the outbox should try again, and when.

    retryable: TIMEOUT, CONNECTION, DNS, SERVER (5xx), RATE_LIMITED (429), UNKNOWN
    permanent: REJECTED (other 4xx, API errors), AUTH, TLS, CONFIG, INTERNAL
"""

from __future__ import annotations

import asyncio
import enum
import errno
import functools
import logging
import socket
import ssl
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from email.utils import parsedate_to_datetime
from typing import Any, Protocol, TypeVar, runtime_checkable

import httpx

from ..model.message import KINDS, Kind, Message, Related  # noqa: F401 - re-exported
from ._redact import redact

log = logging.getLogger("beamwatch.notify")

class ErrorKind(enum.StrEnum):
    TIMEOUT = "timeout"  # no answer within the channel timeout
    CONNECTION = "connection"  # refused, reset, closed mid-way
    DNS = "dns"  # the host name does not resolve
    SERVER = "server"  # 5xx, or an API's "internal_error"
    RATE_LIMITED = "rate_limited"  # 429 / "ratelimited": retry after retry_after
    REJECTED = "rejected"  # other 4xx, or the API refused this request
    AUTH = "auth"  # 401/403, invalid_auth, SMTP 535
    TLS = "tls"  # certificate or handshake failure
    CONFIG = "config"  # bad URL, template error, nothing to send to
    UNKNOWN = "unknown"  # the library says only "failed" (Apprise)
    INTERNAL = "internal"  # a bug in beamwatch

    @property
    def retryable(self) -> bool:
        return self in _RETRYABLE


_RETRYABLE = frozenset(
    {ErrorKind.TIMEOUT, ErrorKind.CONNECTION, ErrorKind.DNS, ErrorKind.SERVER,
     ErrorKind.RATE_LIMITED, ErrorKind.UNKNOWN}
)


@dataclass(frozen=True, slots=True)
class Delivery:
    """The outcome of one `Notifier.send`.

    `ref`: on success, the reference later messages of the same incident give as
    `Message.thread_ref` (Slack "CHANNEL_ID:TS", an email Message-ID). When the
    message was itself a follow-up, `ref` is still the thread's first message.
    `retry`/`retry_after`: whether, and no sooner than how many seconds, trying
    again may succeed. `detail`: for humans, never contains a secret.
    """

    ok: bool
    retry: bool = False
    retry_after: float | None = None
    ref: str | None = None
    detail: str = ""
    error: ErrorKind | None = None
    status: int | None = None  # the HTTP or SMTP status code, when there was one

    @classmethod
    def sent(cls, ref: str | None = None, detail: str = "", status: int | None = None) -> Delivery:
        return cls(ok=True, ref=ref, detail=detail, status=status)

    @classmethod
    def failed(
        cls, error: ErrorKind, detail: str, *, status: int | None = None,
        retry_after: float | None = None,
    ) -> Delivery:
        return cls(
            ok=False, retry=error.retryable, error=error, detail=detail, status=status,
            retry_after=retry_after if error.retryable else None,
        )


class TemplateError(ValueError):
    """A template that cannot be used; str() is "FILE:LINE: message"."""

    def __init__(self, file: str, line: int | None, message: str):
        self.file, self.line, self.message = file, line, message
        super().__init__(f"{file}:{line}: {message}" if line else f"{file}: {message}")


class DeliveryError(Exception):
    """Raised inside notifiers; `Notifier.send` turns it into a failed `Delivery`."""

    def __init__(
        self, error: ErrorKind, detail: str, *, status: int | None = None,
        retry_after: float | None = None, code: str | None = None,
    ):
        super().__init__(detail)
        self.error = error
        self.detail = detail
        self.status = status
        self.retry_after = retry_after
        self.code = code  # the service's own error code (Slack "channel_not_found")

    @property
    def retry(self) -> bool:
        return self.error.retryable

    def to_delivery(self) -> Delivery:
        return Delivery.failed(
            self.error, self.detail, status=self.status, retry_after=self.retry_after
        )


@runtime_checkable
class Notifier(Protocol):
    """Delivers one message to one destination.

    `name` is the registry key ("channel:ops-slack", "person:ana/email");
    `kind` one of "webhook", "email", "slack", "apprise"; `destination` a
    secret-free description for humans.
    """

    name: str
    kind: str
    destination: str

    async def send(self, message: Message) -> Delivery:
        """Never raises for transport or template problems; never blocks the loop."""
        ...

    async def aclose(self) -> None: ...


# --- helpers shared by the notifiers ---------------------------------------------------


class BaseNotifier:
    """`send` = render + deliver within `deadline`, every failure classified."""

    kind = "base"

    def __init__(self, name: str, destination: str, timeout: float):
        self.name = name
        self.destination = destination
        self.timeout = float(timeout)

    # A blocking call abandoned at the deadline runs on in its thread until its own
    # socket timeouts end it: at most this many `timeout`s (0: async, cancelled at once).
    abandoned_steps = 0

    @property
    def deadline(self) -> float:
        """The most one send() may take, all requests included."""
        return self.timeout

    @property
    def worst_case(self) -> float:
        """The longest one send() can keep talking to the destination: the deadline, plus
        what a blocking call abandoned at the deadline may still send from its thread.
        The outbox holds its claim on a row at least this long, so no other worker sends
        the same row while this one may still be sending it."""
        return self.deadline + self.abandoned_steps * self.timeout

    async def _deliver(self, message: Message) -> Delivery:  # pragma: no cover - abstract
        raise NotImplementedError

    async def send(self, message: Message) -> Delivery:
        started = time.monotonic()
        try:
            # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancellation
            # (a stop) that races with the send finishing
            async with asyncio.timeout(self.deadline):
                delivery = await self._deliver(message)
        except DeliveryError as e:
            delivery = e.to_delivery()
        except TemplateError as e:
            delivery = Delivery.failed(ErrorKind.CONFIG, f"template {e}")
        except TimeoutError:
            delivery = Delivery.failed(
                ErrorKind.TIMEOUT, f"no answer from {self.destination} within {self.deadline:g}s"
            )
        except Exception as e:  # noqa: BLE001 - classify every transport failure
            kind, text = classify_exception(e)
            if kind is ErrorKind.INTERNAL:
                log.error(
                    "%s: internal error sending %s: %s", self.name, message.kind,
                    redact(f"{type(e).__name__}: {e}"), exc_info=e,
                )
            delivery = Delivery.failed(kind, f"{self.destination}: {text}")
        delivery = replace(delivery, detail=redact(delivery.detail))
        elapsed = time.monotonic() - started
        if delivery.ok:
            log.info("%s: sent %s %s in %.2fs %s", self.name, message.kind,
                     message.dedup_key or "-", elapsed, delivery.detail)
        else:
            log.warning(
                "%s: %s %s not sent (%s, %s%s): %s", self.name, message.kind,
                message.dedup_key or "-", delivery.error,
                "will retry" if delivery.retry else "permanent",
                f" after {delivery.retry_after:g}s" if delivery.retry_after is not None else "",
                delivery.detail,
            )
        return delivery

    async def aclose(self) -> None:
        return None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} → {self.destination}>"


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """The exception, its causes/contexts, URLError.reason and group members."""
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        e = todo.pop(0)
        if id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        reason = getattr(e, "reason", None)
        for nxt in (e.__cause__, e.__context__, reason):
            if isinstance(nxt, BaseException):
                todo.append(nxt)
        if isinstance(e, BaseExceptionGroup):
            todo.extend(e.exceptions)


def classify_exception(exc: BaseException) -> tuple[ErrorKind, str]:
    """What a transport exception means for retrying, and a short text for humans."""
    chain = list(_chain(exc))
    for e in chain:
        if isinstance(e, socket.gaierror):
            return ErrorKind.DNS, f"cannot resolve the host name ({e.strerror or e})"
    for e in chain:
        if isinstance(e, ConnectionRefusedError) or (
            isinstance(e, OSError) and e.errno == errno.ECONNREFUSED
        ):
            return ErrorKind.CONNECTION, "connection refused"
    for e in chain:
        if isinstance(e, ssl.SSLCertVerificationError):
            why = getattr(e, "verify_message", None) or e
            return ErrorKind.TLS, f"TLS certificate not accepted: {why}"
        if isinstance(e, ssl.SSLError):
            return ErrorKind.TLS, f"TLS failure: {e.reason or e}"
    for e in chain:
        if isinstance(e, (TimeoutError, socket.timeout, httpx.TimeoutException)):
            return ErrorKind.TIMEOUT, "timed out"
    for e in chain:
        if isinstance(e, (httpx.UnsupportedProtocol, httpx.InvalidURL)):
            return ErrorKind.CONFIG, f"invalid URL: {e}"
    for e in chain:
        if isinstance(e, (httpx.TransportError, ConnectionError, OSError)):
            text = str(e) or type(e).__name__
            return ErrorKind.CONNECTION, f"connection failed: {text}"
    return ErrorKind.INTERNAL, f"internal error: {type(exc).__name__}: {exc}"


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """A Retry-After header (seconds or an HTTP date) -> seconds from now."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when - (time.time() if now is None else now))


def http_failure(
    status: int, what: str, reason: str = "", retry_after: str | None = None
) -> DeliveryError | None:
    """None for 2xx; otherwise the classified error for an HTTP status."""
    if 200 <= status < 300:
        return None
    text = f"{what} answered HTTP {status}" + (f" {reason}" if reason else "")
    after = parse_retry_after(retry_after)
    if status == 429:
        return DeliveryError(ErrorKind.RATE_LIMITED, text + (
            f" (retry after {after:g}s)" if after is not None else ""),
            status=status, retry_after=after)
    if status >= 500:
        return DeliveryError(ErrorKind.SERVER, text, status=status, retry_after=after)
    if status == 408:
        return DeliveryError(ErrorKind.TIMEOUT, text, status=status)
    if status in (401, 403, 407):
        return DeliveryError(ErrorKind.AUTH, text, status=status)
    return DeliveryError(ErrorKind.REJECTED, text, status=status)


# --- blocking libraries (smtplib, slack_sdk's WebClient, Apprise) run in threads ------

T = TypeVar("T")
_executor: ThreadPoolExecutor | None = None


def _pool() -> ThreadPoolExecutor:
    global _executor
    if _executor is None:
        _executor = ThreadPoolExecutor(max_workers=16, thread_name_prefix="beamwatch-notify")
    return _executor


async def run_blocking(fn: Callable[..., T], *args: Any, timeout: float, **kwargs: Any) -> T:
    """Run a blocking call in the notifier thread pool; give up waiting after `timeout`.

    The thread itself ends when its own socket timeout fires (every caller sets
    one), so an abandoned call cannot hold a worker for long.
    """
    loop = asyncio.get_running_loop()
    future = loop.run_in_executor(_pool(), functools.partial(fn, *args, **kwargs))
    async with asyncio.timeout(timeout):
        return await future
