"""Generic webhook: POST a versioned JSON body (docs/webhook.md) with httpx.

The whole request (connect, send, wait for the answer) is cut at the channel
`timeout`, so a receiver that accepts the connection and never answers costs
one timeout, not a stuck worker.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import httpx

from .. import __version__
from ..config.types import Secret
from ._redact import register, url_secrets
from .base import BaseNotifier, Delivery, DeliveryError, ErrorKind, Message, Related, http_failure
from .render import Renderer

WEBHOOK_VERSION = 1
USER_AGENT = f"beamwatch/{__version__}"


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z"
    )


def _related(r: Related) -> dict[str, Any]:
    return {
        "check_id": r.check_id, "title": r.title, "severity": str(r.severity),
        "value": r.value, "muted": r.muted,
    }


def _mode_change(m: Message) -> dict[str, Any] | None:
    """Kind "mode" only: what changed, decided by what and whom, and until when."""
    if m.kind != "mode":
        return None
    return {"from": m.previous_mode, "to": m.mode, "source": m.mode_source,
            "author": m.actor, "reason": m.text, "until": _iso(m.until)}


def webhook_body(message: Message, renderer: Renderer) -> dict[str, Any]:
    """The JSON body, version 1. Every field is described in docs/webhook.md."""
    m = message
    return {
        "version": WEBHOOK_VERSION,
        "id": m.id,
        "kind": m.kind,
        "beamline": m.beamline,
        "dedup_key": m.dedup_key,
        "incident_id": m.incident_id,
        "check_ids": list(m.check_ids),
        "title": m.title,
        "severity": str(m.severity),
        "previous_severity": None if m.previous_severity is None else str(m.previous_severity),
        "value": m.value,
        "message": m.text,
        "time": _iso(m.time),
        "since": _iso(m.since),
        "mode": m.mode,
        "link": m.link,
        "actor": m.actor,
        "escalation_level": m.escalation_level,
        "labels": dict(m.labels),
        "consequences": [_related(r) for r in m.consequences],
        "alarms": [_related(r) for r in m.alarms],
        "mode_change": _mode_change(m),
        "description": m.description,
        "runbook": m.runbook,
        "summary": renderer.render("subject", m),
        "text": renderer.render("text", m),
    }


def describe_url(url: str) -> str:
    """scheme://host[:port] only: paths and queries of webhook URLs hold tokens."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or "?"
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "an invalid URL"
    return f"{parts.scheme}://{host}{port}"


class WebhookNotifier(BaseNotifier):
    kind = "webhook"
    abandoned_steps = 0  # the request is async: the deadline cancels it, nothing runs on

    def __init__(
        self,
        name: str,
        url: str | Secret,
        *,
        renderer: Renderer,
        headers: Mapping[str, str | Secret] | None = None,
        timeout: float = 10.0,
        client: httpx.AsyncClient | None = None,
    ):
        self._url = url.get() if isinstance(url, Secret) else str(url)
        register(*url_secrets(self._url))
        try:
            register(str(httpx.URL(self._url)))  # the form httpx logs
        except (httpx.InvalidURL, TypeError):
            pass
        self._headers = {
            k: (v.get() if isinstance(v, Secret) else str(v)) for k, v in (headers or {}).items()
        }
        register(*(v for v in (headers or {}).values() if isinstance(v, Secret)))
        super().__init__(name, f"webhook {describe_url(self._url)}", timeout)
        self.renderer = renderer
        self._client = client
        self._own_client = client is None

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(follow_redirects=False)
        return self._client

    async def _deliver(self, message: Message) -> Delivery:
        body = webhook_body(message, self.renderer)
        headers = {"User-Agent": USER_AGENT, **self._headers}
        if message.id:
            headers["Idempotency-Key"] = message.id
        try:
            response = await self._http().post(
                self._url, json=body, headers=headers, timeout=httpx.Timeout(self.timeout)
            )
        except httpx.UnsupportedProtocol as e:
            raise DeliveryError(ErrorKind.CONFIG, f"{self.destination}: {e}") from None
        failure = http_failure(
            response.status_code, self.destination, response.reason_phrase,
            response.headers.get("retry-after"),
        )
        if failure is not None:
            snippet = " ".join(response.text[:200].split())
            if snippet and failure.error is not ErrorKind.SERVER:
                failure.detail += f": {snippet}"
            raise failure
        return Delivery.sent(
            detail=f"{self.destination} answered HTTP {response.status_code}",
            status=response.status_code,
        )

    async def aclose(self) -> None:
        if self._own_client and self._client is not None:
            await self._client.aclose()
            self._client = None
