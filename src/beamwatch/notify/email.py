"""Email over SMTP (smtplib, in a worker thread): a plain-text and an HTML part.

STARTTLS when `smtp_starttls`, implicit TLS when the port is 465, AUTH when
`smtp_user` is set. Every message carries a Message-ID (returned as the
Delivery ref); a message with `thread_ref` (an earlier Message-ID) sets
In-Reply-To and References, so mail clients thread an incident together.
"""

from __future__ import annotations

import smtplib
import socket
import ssl
import uuid
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate

from ..config.types import Secret
from ._redact import register
from .base import (
    BaseNotifier,
    Delivery,
    DeliveryError,
    ErrorKind,
    Message,
    classify_exception,
    run_blocking,
)
from .render import Renderer

_HOSTNAME = socket.gethostname() or "localhost"  # not getfqdn(): it can block on DNS


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int = 25
    sender: str = ""
    user: str | None = None
    password: Secret | None = None
    starttls: bool = False
    ssl: bool | None = None  # implicit TLS; None: only on port 465
    timeout: float = 10.0

    @property
    def implicit_tls(self) -> bool:
        return self.port == 465 if self.ssl is None else self.ssl


def smtp_failure(e: smtplib.SMTPException, where: str) -> DeliveryError:
    """SMTP reply codes: 4xx is temporary, 5xx permanent, 535 is authentication."""
    if isinstance(e, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _ in e.recipients.values()]
        texts = "; ".join(
            f"{rcpt}: {code} {_text(msg)}" for rcpt, (code, msg) in e.recipients.items()
        )
        temporary = all(400 <= c < 500 for c in codes)
        return DeliveryError(
            ErrorKind.SERVER if temporary else ErrorKind.REJECTED,
            f"{where} refused every recipient: {texts}", status=max(codes, default=None),
        )
    if isinstance(e, smtplib.SMTPNotSupportedError):
        return DeliveryError(ErrorKind.CONFIG, f"{where}: {e}")
    if isinstance(e, smtplib.SMTPServerDisconnected):
        # smtplib turns a socket timeout into "Connection unexpectedly closed: timed out"
        if classify_exception(e)[0] is ErrorKind.TIMEOUT:
            return DeliveryError(ErrorKind.TIMEOUT, f"{where} did not answer in time")
        return DeliveryError(ErrorKind.CONNECTION, f"{where} closed the connection: {e}")
    code = getattr(e, "smtp_code", None)
    text = _text(getattr(e, "smtp_error", b"")) or str(e)
    if isinstance(e, smtplib.SMTPAuthenticationError) or code in (530, 534, 535):
        return DeliveryError(ErrorKind.AUTH, f"{where} refused the login: {code} {text}",
                             status=code)
    if isinstance(code, int) and 400 <= code < 500:
        return DeliveryError(ErrorKind.SERVER, f"{where} answered {code} {text} (temporary)",
                             status=code)
    if isinstance(code, int) and code >= 500:
        return DeliveryError(ErrorKind.REJECTED, f"{where} answered {code} {text}", status=code)
    return DeliveryError(ErrorKind.CONNECTION, f"{where}: {type(e).__name__}: {e}")


def _text(raw: bytes | str) -> str:
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", "replace")
    return " ".join(str(raw).split())


class EmailNotifier(BaseNotifier):
    kind = "email"

    def __init__(self, name: str, smtp: SmtpSettings, to: list[str], *, renderer: Renderer):
        super().__init__(
            name, f"email to {', '.join(to) or '(nobody)'} via {smtp.host}:{smtp.port}",
            smtp.timeout,
        )
        if smtp.password is not None:
            register(smtp.password)
        self.smtp = smtp
        self.to = list(to)
        self.renderer = renderer

    # smtplib goes on alone after the deadline, each step up to `timeout`: connect, EHLO,
    # STARTTLS, EHLO, AUTH, MAIL, RCPT, DATA, QUIT
    abandoned_steps = 9

    @property
    def deadline(self) -> float:
        # connect, EHLO, STARTTLS, AUTH and DATA each wait up to `timeout`;
        # the socket timeout cuts each one, this bounds the whole exchange.
        return self.timeout * 2 + 1

    def build(self, message: Message) -> EmailMessage:
        """The MIME message: multipart/alternative, text first then HTML."""
        email = EmailMessage()
        email["Subject"] = self.renderer.render("subject", message)
        email["From"] = self.smtp.sender
        email["To"] = ", ".join(self.to)
        email["Date"] = formatdate(localtime=False)
        domain = self.smtp.sender.rpartition("@")[2] or "beamwatch.invalid"
        email["Message-ID"] = f"<{uuid.uuid4().hex}@{domain}>"  # short: never folded
        if message.thread_ref:
            email["In-Reply-To"] = message.thread_ref
            email["References"] = message.thread_ref
        email["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies
        email["X-Beamwatch-Kind"] = message.kind
        if message.dedup_key:
            email["X-Beamwatch-Dedup-Key"] = message.dedup_key
        if message.incident_id:
            email["X-Beamwatch-Incident"] = message.incident_id
        email.set_content(self.renderer.render("text", message))
        email.add_alternative(self.renderer.render("html", message), subtype="html")
        return email

    async def _deliver(self, message: Message) -> Delivery:
        if not self.to:
            raise DeliveryError(ErrorKind.CONFIG, "no recipient address (to:) for this channel")
        email = self.build(message)
        refused = await run_blocking(self._send_blocking, email, timeout=self.deadline)
        msgid = str(email["Message-ID"])
        detail = f"{self.destination} accepted {msgid}"
        if refused:
            detail += "; refused: " + "; ".join(
                f"{rcpt}: {code} {_text(msg)}" for rcpt, (code, msg) in refused.items()
            )
        return Delivery.sent(ref=message.thread_ref or msgid, detail=detail)

    def _send_blocking(self, email: EmailMessage) -> dict[str, tuple[int, bytes]]:
        s = self.smtp
        where = f"SMTP server {s.host}:{s.port}"
        context = ssl.create_default_context()
        try:
            if s.implicit_tls:
                client: smtplib.SMTP = smtplib.SMTP_SSL(
                    s.host, s.port, timeout=s.timeout, local_hostname=_HOSTNAME, context=context
                )
            else:
                client = smtplib.SMTP(s.host, s.port, timeout=s.timeout, local_hostname=_HOSTNAME)
        except smtplib.SMTPException as e:
            raise smtp_failure(e, where) from None
        try:
            client.ehlo_or_helo_if_needed()
            if s.starttls:
                client.starttls(context=context)
                client.ehlo()
            if s.user:
                client.login(s.user, s.password.get() if s.password else "")
            return client.send_message(email, from_addr=s.sender, to_addrs=self.to)
        except smtplib.SMTPException as e:
            raise smtp_failure(e, where) from None
        finally:
            try:
                client.quit()
            except (smtplib.SMTPException, OSError):
                client.close()
