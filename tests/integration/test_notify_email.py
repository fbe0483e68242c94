"""Email through smtplib against a real SMTP server (aiosmtpd) on loopback."""

from __future__ import annotations

import email
import email.policy
import logging
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from beamwatch.config.types import Secret
from beamwatch.notify import EmailNotifier, ErrorKind, Renderer, SmtpSettings
from beamwatch.notify.render import sample_message

pytestmark = pytest.mark.integration

RENDERER = Renderer()
PASSWORD = "smtp-pass-secret-77"


def free_port() -> int:
    # aiosmtpd's Controller(port=0) cannot report the port it got: pick one first.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Inbox:
    def __init__(self) -> None:
        self.envelopes: list[Any] = []
        self.rcpt_answer: dict[str, str] = {}

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802
        answer = self.rcpt_answer.get(address)
        if answer:
            return answer
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        self.envelopes.append(envelope)
        return "250 Message accepted for delivery"


def authenticator(server, session, envelope, mechanism, auth_data) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and (
        auth_data.login == b"beamwatch" and auth_data.password == PASSWORD.encode()
    )
    return AuthResult(success=ok, handled=False)


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    inbox, port = Inbox(), free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port,
                            authenticator=authenticator, auth_require_tls=False)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


def mailer(port: int, to: list[str] | None = None, **settings: Any) -> EmailNotifier:
    smtp = SmtpSettings(host="127.0.0.1", port=port, sender="beamwatch@i04.example.org",
                        timeout=settings.pop("timeout", 2.0), **settings)
    return EmailNotifier("channel:mail", smtp, to or ["ops@example.org"], renderer=RENDERER)


async def test_text_and_html_parts_arrive(smtp: tuple[Inbox, int]) -> None:
    inbox, port = smtp
    m = sample_message("alarm")
    d = await mailer(port, ["ops@example.org", "ana@example.org"]).send(m)
    assert (d.ok, d.retry) == (True, False)
    [env] = inbox.envelopes
    assert env.mail_from == "beamwatch@i04.example.org"
    assert env.rcpt_tos == ["ops@example.org", "ana@example.org"]
    msg = email.message_from_bytes(env.original_content, policy=email.policy.default)
    assert msg["Subject"] == "[I04] MAJOR: DCM crystal temperature = 141.2 (+2 affected)"
    assert msg["From"] == "beamwatch@i04.example.org"
    assert msg["To"] == "ops@example.org, ana@example.org"
    assert msg["Auto-Submitted"] == "auto-generated"
    assert msg["X-Beamwatch-Dedup-Key"] == "I04/dcm-temp"
    assert msg["Message-ID"] == d.ref and d.ref.endswith("@i04.example.org>")
    assert msg.get_content_type() == "multipart/alternative"
    text = msg.get_body(("plain",))
    html = msg.get_body(("html",))
    assert text is not None and html is not None
    assert text.get_content().replace("\r\n", "\n") == RENDERER.render("text", m)
    assert html.get_content().replace("\r\n", "\n").strip() == RENDERER.render("html", m)
    assert "Root cause of 2 other alarms" in html.get_content()


async def test_follow_up_threads_on_the_first_message(smtp: tuple[Inbox, int]) -> None:
    inbox, port = smtp
    first = "<first.1@i04.example.org>"
    d = await mailer(port).send(sample_message("resolve").threaded(first))
    assert (d.ok, d.ref) == (True, first)
    msg = email.message_from_bytes(inbox.envelopes[0].original_content,
                                   policy=email.policy.default)
    assert msg["In-Reply-To"] == first and msg["References"] == first
    assert msg["Message-ID"] != first


async def test_login(smtp: tuple[Inbox, int]) -> None:
    inbox, port = smtp
    d = await mailer(port, user="beamwatch", password=Secret(PASSWORD)).send(
        sample_message("test"))
    assert d.ok and len(inbox.envelopes) == 1


async def test_wrong_password_is_permanent_and_secret_free(
    smtp: tuple[Inbox, int], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    _, port = smtp
    wrong = "wrong-pass-secret-88"
    d = await mailer(port, user="beamwatch", password=Secret(wrong)).send(sample_message("test"))
    assert (d.ok, d.retry, d.error, d.status) == (False, False, ErrorKind.AUTH, 535)
    assert "refused the login: 535" in d.detail
    for text in [d.detail, *(r.getMessage() for r in caplog.records)]:
        assert wrong not in text and PASSWORD not in text


@pytest.mark.parametrize(
    ("answer", "kind", "retry"),
    [("550 5.1.1 No such user", ErrorKind.REJECTED, False),
     ("450 4.2.0 Mailbox busy, try later", ErrorKind.SERVER, True)],
)
async def test_refused_recipient(smtp: tuple[Inbox, int], answer: str, kind: ErrorKind,
                                 retry: bool) -> None:
    inbox, port = smtp
    inbox.rcpt_answer["nobody@example.org"] = answer
    d = await mailer(port, ["nobody@example.org"]).send(sample_message("alarm"))
    assert (d.ok, d.retry, d.error, d.status) == (False, retry, kind, int(answer[:3]))
    assert f"nobody@example.org: {answer}" in d.detail


async def test_one_refused_of_two_is_still_sent(smtp: tuple[Inbox, int]) -> None:
    inbox, port = smtp
    inbox.rcpt_answer["nobody@example.org"] = "550 5.1.1 No such user"
    d = await mailer(port, ["ops@example.org", "nobody@example.org"]).send(sample_message("alarm"))
    assert d.ok and "refused: nobody@example.org: 550 5.1.1 No such user" in d.detail
    assert inbox.envelopes[0].rcpt_tos == ["ops@example.org"]


async def test_starttls_not_offered_is_permanent(smtp: tuple[Inbox, int]) -> None:
    _, port = smtp
    d = await mailer(port, starttls=True).send(sample_message("alarm"))
    assert (d.ok, d.retry, d.error) == (False, False, ErrorKind.CONFIG)
    assert "STARTTLS extension not supported" in d.detail


async def test_connection_refused_is_retryable() -> None:
    d = await mailer(free_port()).send(sample_message("alarm"))
    assert (d.ok, d.retry, d.error) == (False, True, ErrorKind.CONNECTION)
    assert d.detail == "email to ops@example.org via 127.0.0.1:" + d.detail.split(":")[1] + \
        ": connection refused"


async def test_silent_server_times_out() -> None:
    with socket.socket() as s:  # accepts the connection, never sends the 220 greeting
        s.bind(("127.0.0.1", 0))
        s.listen(4)
        t0 = time.monotonic()
        d = await mailer(s.getsockname()[1], timeout=0.3).send(sample_message("alarm"))
    assert time.monotonic() - t0 < 2
    assert (d.ok, d.retry, d.error) == (False, True, ErrorKind.TIMEOUT)


async def test_no_recipient_is_a_config_error() -> None:
    n = EmailNotifier("channel:mail", SmtpSettings(host="127.0.0.1", sender="a@b"), [],
                      renderer=RENDERER)
    d = await n.send(sample_message("alarm"))
    assert (d.ok, d.retry, d.error) == (False, False, ErrorKind.CONFIG)
