"""Alarms out to Prometheus Alertmanager: POST /api/v2/alerts (httpx).

Each message becomes the alerts of its checks (one per check; a summary: one per
alarm it lists). An alert's labels say which check it is, and are the same every
time for that check, so a resolve ends the very alert an alarm started:

    alertname  the check id          beamline, group, check  from the config
    severity   critical (MAJOR, INVALID) or warning (MINOR)
    + the check's own labels, then the channel's `labels:` (which win, alertname too)

Annotations: summary (title and message), description (the message), value,
incident; generatorURL is the dashboard link (web.url). A firing alert's endsAt
is `ends_after` from now (24 h by default): Alertmanager keeps it firing that long
without hearing again, and each repeat posts it again (routes to this channel
should repeat more often than that). A resolve posts endsAt = the time it ended,
for both severities, so an alarm that went from MINOR to MAJOR ends whole. Ack
posts the alert again with who acknowledged; mode changes and reminders post
nothing. 4xx is permanent, 5xx, timeouts and connection failures are retried.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

from ..config.types import Secret
from ..model import Severity
from ._redact import register, url_secrets
from .base import BaseNotifier, Delivery, ErrorKind, Message, http_failure
from .webhook import USER_AGENT, _iso, describe_url

FIRING_KINDS = ("alarm", "repeat", "escalation", "ack")
TEST_ENDS = 300.0  # seconds a test alert stays up


def am_severity(severity: Severity) -> str:
    return "warning" if severity == Severity.MINOR else "critical"


CheckInfo = tuple[str, Mapping[str, str]]  # (group, labels) of a check


class AlertmanagerNotifier(BaseNotifier):
    kind = "alertmanager"
    abandoned_steps = 0  # async: the deadline cancels the request

    def __init__(self, name: str, url: str | Secret, *, checks: Mapping[str, CheckInfo],
                 labels: Mapping[str, str] | None = None, token: Secret | None = None,
                 username: str | None = None, password: Secret | None = None,
                 headers: Mapping[str, str | Secret] | None = None,
                 ends_after: float = 86400.0, timeout: float = 10.0,
                 client: httpx.AsyncClient | None = None):
        base = url.get() if isinstance(url, Secret) else str(url)
        # the password of http://user:pass@host, never the whole URL: it is also the
        # destination people read in logs
        register(*url_secrets(base)[1:])
        self._url = base.rstrip("/") + "/api/v2/alerts"
        super().__init__(name, f"alertmanager {describe_url(base)}", timeout)
        self.checks = checks
        self.labels = dict(labels or {})
        self.ends_after = ends_after
        self._headers = {k: (v.get() if isinstance(v, Secret) else str(v))
                         for k, v in (headers or {}).items()}
        register(*(v for v in (headers or {}).values() if isinstance(v, Secret)))
        if token is not None:
            register(token)
            self._headers["Authorization"] = f"Bearer {token.get()}"
        self._auth = httpx.BasicAuth(username, password.get() if password else "") \
            if username else None
        if password is not None:
            register(password)
        self._client = client
        self._own_client = client is None

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(follow_redirects=False)
        return self._client

    async def _deliver(self, message: Message) -> Delivery:
        alerts = self.alerts(message)
        if not alerts:
            return Delivery.sent(detail=f"a {message.kind} message: nothing to post")
        response = await self._http().post(
            self._url, json=alerts, headers={"User-Agent": USER_AGENT, **self._headers},
            auth=self._auth or httpx.USE_CLIENT_DEFAULT, timeout=httpx.Timeout(self.timeout))
        failure = http_failure(response.status_code, self.destination, response.reason_phrase,
                               response.headers.get("retry-after"))
        if failure is not None:
            snippet = " ".join(response.text[:200].split())
            if snippet and failure.error is not ErrorKind.SERVER:
                failure.detail += f": {snippet}"
            raise failure
        return Delivery.sent(detail=f"{len(alerts)} alerts, {self.destination} answered "
                                    f"HTTP {response.status_code}",
                             status=response.status_code)

    # -- message -> alerts ---------------------------------------------------------------

    def alerts(self, m: Message) -> list[dict[str, Any]]:
        """The body of POST /api/v2/alerts for one message (may be empty)."""
        if m.kind == "test":
            return [self._alert(m, "beamwatch-test", Severity.MINOR, m.title, m.text,
                                m.time + TEST_ENDS)]
        if m.kind == "resolve":
            return [a for cid in m.check_ids for a in self._ended(m, cid)]
        if m.kind == "summary":
            out: list[dict[str, Any]] = []
            for r in m.alarms:
                if r.severity > Severity.OK:
                    out.append(self._alert(m, r.check_id, r.severity, r.title, r.value,
                                           m.time + self.ends_after))
                else:
                    out += self._ended(m, r.check_id)
            return out
        if m.kind not in FIRING_KINDS or m.severity == Severity.OK:
            return []
        out = []
        for cid in m.check_ids:
            out.append(self._alert(m, cid, m.severity, m.title, m.text,
                                   m.time + self.ends_after))
            before = m.previous_severity
            if before is not None and before > Severity.OK and \
                    am_severity(before) != am_severity(m.severity):
                out.append(self._alert(m, cid, before, m.title, m.text, m.time))  # its end
        return out

    def _ended(self, m: Message, check_id: str) -> list[dict[str, Any]]:
        return [self._alert(m, check_id, sev, m.title, m.text, m.time)
                for sev in (Severity.MAJOR, Severity.MINOR)]

    def _alert(self, m: Message, check_id: str, severity: Severity, title: str, text: str,
               ends: float) -> dict[str, Any]:
        group, own = self.checks.get(check_id, ("", {}))
        labels = {**own, "alertname": check_id, "check": check_id, "beamline": m.beamline,
                  "severity": am_severity(severity)}
        if group:
            labels["group"] = group
        labels.update(self.labels)
        annotations = {"summary": f"{title}: {text}" if text else title,
                       "description": text or title, "beamwatch_severity": severity.name}
        if m.value:
            annotations["value"] = m.value
        if m.incident_id:
            annotations["incident"] = m.incident_id
        if m.kind == "ack" and m.actor:
            annotations["acknowledged_by"] = m.actor
        alert: dict[str, Any] = {"labels": labels, "annotations": annotations,
                                 "startsAt": _iso(m.since or m.time), "endsAt": _iso(ends)}
        if m.link:
            alert["generatorURL"] = m.link
        return alert

    async def aclose(self) -> None:
        if self._own_client and self._client is not None:
            await self._client.aclose()
            self._client = None
