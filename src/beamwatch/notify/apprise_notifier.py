"""Any Apprise URL: signal://, whatsapp://, ntfy://, mailto://, msteams://, tgram://...

Apprise's notify() is synchronous: it runs in the notifier thread pool, with
the channel timeout as Apprise's own call deadline and as the socket connect
and read timeouts of the service (unless the URL sets ?cto= / ?rto=).

Apprise 2.x answers with an AppriseResult whose service entries carry the
service's log lines (WARNING and above); those, with every secret part of the
URL masked, become the Delivery detail. Apprise does not say why a service
failed in a machine-readable way, so every failure is UNKNOWN and retryable;
the outbox's expiry bounds the retries. A TIMEOUT result is TIMEOUT.
"""

from __future__ import annotations

import re
from typing import Any

import apprise

from ..config.types import Secret
from ._redact import redact, register, url_secrets
from .base import BaseNotifier, Delivery, DeliveryError, ErrorKind, Message, run_blocking
from .render import Renderer


class AppriseUrlError(ValueError):
    """An Apprise URL Apprise cannot use (unknown scheme, missing token...)."""


def _asset() -> apprise.AppriseAsset:
    # memory: no persistent cache files written by plugins
    return apprise.AppriseAsset(storage_mode="memory")


def load_plugin(url: str, targets: list[str] | None = None) -> Any:
    """The Apprise plugin for `url`, optionally with its targets replaced.

    Replacing targets is how one channel's settings (the signal-cli-rest-api
    address and sender number, the WhatsApp token and phone id) reach a
    person's own number: Apprise.instantiate does parse_url() then the plugin
    class with those arguments, and so do we, with `targets` swapped.
    Raises AppriseUrlError with a secret-free reason.
    """
    asset = _asset()
    plugin = apprise.Apprise.instantiate(url, asset=asset, suppress_exceptions=True)
    if plugin is None:
        scheme = url.split("://", 1)[0] if "://" in url else "?"
        raise AppriseUrlError(
            f"Apprise cannot use this {scheme}:// URL (unknown scheme, or a token or "
            "target it needs is missing or malformed; see https://appriseit.com/services/)"
        )
    if targets is not None:
        cls = type(plugin)
        results = cls.parse_url(url)
        if not results:
            raise AppriseUrlError(f"Apprise cannot parse the {cls.__name__} URL")
        results["targets"] = list(targets)
        results["asset"] = asset
        try:
            plugin = cls(**results)
        except Exception as e:  # noqa: BLE001 - apprise raises TypeError on bad values
            raise AppriseUrlError(
                f"{getattr(cls, 'service_name', cls.__name__)}: {redact(str(e))}"
            ) from None
        if not getattr(plugin, "targets", None):
            raise AppriseUrlError(
                f"{getattr(cls, 'service_name', cls.__name__)} does not accept "
                f"{', '.join(targets)} as a recipient"
            )
    return plugin


class AppriseNotifier(BaseNotifier):
    kind = "apprise"

    def __init__(
        self,
        name: str,
        url: str | Secret,
        *,
        renderer: Renderer,
        timeout: float = 10.0,
        targets: list[str] | None = None,
    ):
        raw = url.get() if isinstance(url, Secret) else str(url)
        try:
            self.plugin = load_plugin(raw, targets)
        except AppriseUrlError:
            register(*url_secrets(raw))
            raise
        private = self.plugin.url(privacy=True)
        for form in (raw, self.plugin.url()):
            secret_parts = url_secrets(form, private)[1:]
            if secret_parts:  # a URL without secret parts is printed as it is
                register(form, *secret_parts)
        if "cto=" not in raw:
            self.plugin.socket_connect_timeout = timeout
        if "rto=" not in raw:
            self.plugin.socket_read_timeout = timeout
        service = getattr(self.plugin, "service_name", type(self.plugin).__name__)
        shown = private.split("?", 1)[0]
        super().__init__(name, f"{service} {redact(shown)}", timeout)
        self.service = service
        self.renderer = renderer

    abandoned_steps = 2  # the plugin's request in flight: connect, then read

    @property
    def deadline(self) -> float:
        return self.timeout * 2 + 1

    async def _deliver(self, message: Message) -> Delivery:
        # Services without a title (Signal, WhatsApp, SMS) get it as the first line.
        title = self.renderer.render("subject", message)
        body = self.renderer.render("text", message)
        result = await run_blocking(self._notify_blocking, title, body, timeout=self.deadline)
        return self._outcome(result)

    def _notify_blocking(self, title: str, body: str) -> Any:
        a = apprise.Apprise(asset=_asset())
        a.add(self.plugin)
        return a.notify(
            body=body, title=title, body_format=apprise.NotifyFormat.TEXT,
            timeout=self.timeout * 2,
        )

    def _outcome(self, result: Any) -> Delivery:
        if bool(result):
            return Delivery.sent(detail=f"{self.destination}: accepted")
        lines: list[str] = []
        services = getattr(result, "results", None)
        status = getattr(getattr(result, "status", None), "name", None)
        for service in services or ():
            for entry in service.logs():
                if entry.level in ("WARNING", "ERROR", "CRITICAL", "DEPRECATION WARNING"):
                    lines.append(" ".join(str(entry.message).split()))
        for entry in getattr(result, "call_logs", lambda: ())():
            if getattr(entry, "level", "") in ("WARNING", "ERROR", "CRITICAL"):
                lines.append(" ".join(str(entry.message).split()))
        seen: list[str] = []
        for line in lines:
            if line not in seen:
                seen.append(line)
        why = "; ".join(seen)[:500] or "Apprise reported a failure without a reason"
        if status == "TIMEOUT":
            raise DeliveryError(ErrorKind.TIMEOUT, f"{self.destination}: timed out: {why}")
        # Most plugins end their failure line with "error=NNN": kept for humans and
        # metrics only; Apprise does not promise it, so it does not decide retrying.
        codes = re.findall(r"error=(\d{3})\b", why)
        raise DeliveryError(
            ErrorKind.UNKNOWN, f"{self.destination}: {why}",
            status=int(codes[-1]) if codes else None,
        )
