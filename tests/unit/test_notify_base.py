"""The delivery contract: classification of failures, Retry-After, never raising,
the deadline, and secrets kept out of details and logs."""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import urllib.error
from email.utils import formatdate

import httpx
import pytest

from beamwatch.config.types import Secret
from beamwatch.model import Severity
from beamwatch.notify import Delivery, DeliveryError, ErrorKind, Message, parse_retry_after
from beamwatch.notify._redact import redact, register, url_secrets
from beamwatch.notify.base import BaseNotifier, classify_exception, http_failure


@pytest.mark.parametrize(
    ("status", "kind", "retry"),
    [
        (500, ErrorKind.SERVER, True),
        (502, ErrorKind.SERVER, True),
        (503, ErrorKind.SERVER, True),
        (429, ErrorKind.RATE_LIMITED, True),
        (408, ErrorKind.TIMEOUT, True),
        (400, ErrorKind.REJECTED, False),
        (404, ErrorKind.REJECTED, False),
        (410, ErrorKind.REJECTED, False),
        (401, ErrorKind.AUTH, False),
        (403, ErrorKind.AUTH, False),
        (301, ErrorKind.REJECTED, False),
    ],
)
def test_http_status_classification(status: int, kind: ErrorKind, retry: bool) -> None:
    err = http_failure(status, "webhook http://x", "Reason")
    assert err is not None and err.error is kind and err.retry is retry
    d = err.to_delivery()
    assert (d.ok, d.retry, d.error, d.status) == (False, retry, kind, status)
    assert d.detail == f"webhook http://x answered HTTP {status} Reason"


def test_2xx_is_not_a_failure() -> None:
    assert http_failure(200, "x") is None and http_failure(204, "x") is None


def test_429_carries_retry_after() -> None:
    d = http_failure(429, "x", "Too Many Requests", "17").to_delivery()
    assert (d.retry, d.retry_after) == (True, 17.0)
    assert "retry after 17s" in d.detail


def test_permanent_failures_have_no_retry_after() -> None:
    d = Delivery.failed(ErrorKind.REJECTED, "no", retry_after=5)
    assert d.retry is False and d.retry_after is None


def test_parse_retry_after_seconds_and_date() -> None:
    assert parse_retry_after("120") == 120.0
    assert parse_retry_after(" 1.5 ") == 1.5
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    now = 1_790_000_000.0
    assert parse_retry_after(formatdate(now + 30, usegmt=True), now=now) == 30.0
    assert parse_retry_after(formatdate(now - 30, usegmt=True), now=now) == 0.0


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (socket.gaierror(-2, "Name or service not known"), ErrorKind.DNS),
        (ConnectionRefusedError(111, "Connection refused"), ErrorKind.CONNECTION),
        (urllib.error.URLError(ConnectionRefusedError(111, "refused")), ErrorKind.CONNECTION),
        (urllib.error.URLError(socket.gaierror(-2, "unknown")), ErrorKind.DNS),
        (httpx.ConnectTimeout("timed out"), ErrorKind.TIMEOUT),
        (httpx.ReadTimeout("timed out"), ErrorKind.TIMEOUT),
        (TimeoutError("timed out"), ErrorKind.TIMEOUT),
        (httpx.RemoteProtocolError("Server disconnected"), ErrorKind.CONNECTION),
        (ConnectionResetError(104, "reset"), ErrorKind.CONNECTION),
        (ssl.SSLCertVerificationError(1, "certificate verify failed"), ErrorKind.TLS),
        (httpx.UnsupportedProtocol("Request URL has an unsupported protocol 'ftp://'"),
         ErrorKind.CONFIG),
        (ValueError("a bug"), ErrorKind.INTERNAL),
    ],
)
def test_exception_classification(exc: BaseException, kind: ErrorKind) -> None:
    assert classify_exception(exc)[0] is kind


def test_wrapped_causes_are_found() -> None:
    try:
        try:
            raise ConnectionRefusedError(111, "Connection refused")
        except OSError as inner:
            raise httpx.ConnectError("All connection attempts failed") from inner
    except httpx.ConnectError as outer:
        assert classify_exception(outer) == (ErrorKind.CONNECTION, "connection refused")


def test_retryable_kinds() -> None:
    retry = {k for k in ErrorKind if k.retryable}
    assert retry == {ErrorKind.TIMEOUT, ErrorKind.CONNECTION, ErrorKind.DNS, ErrorKind.SERVER,
                     ErrorKind.RATE_LIMITED, ErrorKind.UNKNOWN}


def test_message_coerces_and_validates() -> None:
    m = Message(kind="alarm", beamline="I04", title="t", severity="major",  # type: ignore[arg-type]
                previous_severity="minor", check_ids=["a", "b"])  # type: ignore[arg-type]
    assert m.severity is Severity.MAJOR and m.previous_severity is Severity.MINOR
    assert m.check_ids == ("a", "b") and m.check_id == "a"
    assert m.threaded("C1:2.3").thread_ref == "C1:2.3"
    with pytest.raises(ValueError, match="unknown message kind 'alarms'"):
        Message(kind="alarms", beamline="I04", title="t", severity=Severity.MAJOR)  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", ["alarm", "summary", "test"])
def test_message_round_trips_through_json(kind: str) -> None:
    import json

    from beamwatch.notify.render import sample_message

    for m in (sample_message(kind), sample_message(kind, minimal=True)):
        data = json.loads(json.dumps(m.to_dict()))
        assert Message.from_dict(data) == m
    data = sample_message("alarm").to_dict()
    assert data["severity"] == "MAJOR" and data["consequences"][0]["severity"] == "MAJOR"
    assert Message.from_dict({**data, "added_in_v2": 1}) == sample_message("alarm")


class _Fake(BaseNotifier):
    kind = "fake"

    def __init__(self, behaviour, timeout: float = 0.2):
        super().__init__("channel:fake", "fake destination", timeout)
        self.behaviour = behaviour

    async def _deliver(self, message: Message) -> Delivery:
        return await self.behaviour()


MSG = Message(kind="test", beamline="I04", title="t", severity=Severity.OK)


async def test_send_never_raises_on_a_bug(caplog: pytest.LogCaptureFixture) -> None:
    async def boom() -> Delivery:
        raise KeyError("oops")

    d = await _Fake(boom).send(MSG)
    assert (d.ok, d.retry, d.error) == (False, False, ErrorKind.INTERNAL)
    assert "KeyError" in d.detail
    assert any(r.levelno == logging.ERROR for r in caplog.records)


async def test_send_turns_delivery_error_into_delivery() -> None:
    async def refuse() -> Delivery:
        raise DeliveryError(ErrorKind.RATE_LIMITED, "slow down", retry_after=3, status=429)

    d = await _Fake(refuse).send(MSG)
    assert (d.ok, d.retry, d.retry_after, d.status) == (False, True, 3, 429)


async def test_send_is_cut_at_the_deadline() -> None:
    async def hang() -> Delivery:
        await asyncio.sleep(10)
        return Delivery.sent()

    loop = asyncio.get_running_loop()
    t0 = loop.time()
    d = await _Fake(hang, timeout=0.1).send(MSG)
    assert loop.time() - t0 < 1
    assert (d.ok, d.retry, d.error) == (False, True, ErrorKind.TIMEOUT)
    assert d.detail == "no answer from fake destination within 0.1s"


async def test_transport_exception_is_classified() -> None:
    async def refused() -> Delivery:
        raise ConnectionRefusedError(111, "Connection refused")

    d = await _Fake(refused).send(MSG)
    assert (d.ok, d.retry, d.error) == (False, True, ErrorKind.CONNECTION)
    assert d.detail == "fake destination: connection refused"


async def test_secrets_are_redacted_in_details_and_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    register(Secret("xoxb-unit-test-secret-1"))

    async def leak() -> Delivery:
        raise DeliveryError(ErrorKind.AUTH, "token xoxb-unit-test-secret-1 refused")

    d = await _Fake(leak).send(MSG)
    assert d.detail == "token <secret> refused"
    logging.getLogger("apprise").warning("url has xoxb-unit-test-secret-1 in it")
    logging.getLogger("httpx").info("GET %s", "https://x/xoxb-unit-test-secret-1")
    assert caplog.records
    for record in caplog.records:
        assert "xoxb-unit-test-secret-1" not in record.getMessage()


def test_url_secrets_without_a_private_form() -> None:
    parts = url_secrets(
        "https://user:pw-secret@hooks.example.org/services/T0123ABCD/B0456EFGH/"
        "abcdefghijklmnopqrstuvwx?channel=ops&token=short1"
    )
    assert "pw-secret" in parts and "T0123ABCD" in parts
    assert "abcdefghijklmnopqrstuvwx" in parts and "short1" in parts
    assert "services" not in parts and "ops" not in parts and "hooks.example.org" not in parts


def test_url_secrets_with_a_private_form() -> None:
    raw = "whatsapp://abcdef123secret@123456789/+441234567890"
    private = "whatsapp://a...t@1...9/%2B441234567890/?overflow=upstream"
    parts = url_secrets(raw, private)
    assert "abcdef123secret" in parts and "123456789" in parts
    assert "+441234567890" not in parts


def test_redact_masks_registered_values_only() -> None:
    register("another-secret-value")
    assert redact("a another-secret-value b") == "a <secret> b"
    assert redact("nothing here") == "nothing here"
