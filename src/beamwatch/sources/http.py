"""HTTP/REST checks: a value from a status endpoint, its status code, latency or
the days left on its TLS certificate.

One `httpx.AsyncClient` per source (connections are reused between polls), with
the source's base_url, headers, basic auth and `verify`. The value of a check
(`measure: value`) is the JMESPath result with `json:`, group 1 (or the whole
match) with `regex:`, else the status code. Every failure is a `ReadError` whose
text says what went wrong, in words and without secrets: the engine turns it
into a disconnected sample.

`max_connections` is a limit per server (origin), not for the whole source: a
dead or slow server holds only its own connections, so a check of another
server on the same source is never queued behind it.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import socket
import ssl
import time
from datetime import UTC, datetime
from typing import Any

import httpx

from ..config.schema import CheckConfig, Config, SourceConfig
from . import jsonpath
from .polled import PolledSource, ReadError, Reading

MAX_BODY_TEXT = 60  # of a response body quoted in a message


class HttpSource(PolledSource):
    kind = "http"

    def __init__(self, name: str, config: Config, clock=None):
        self._client: httpx.AsyncClient | None = None
        self._client_settings: SourceConfig | None = None
        self._retired: list[httpx.AsyncClient] = []
        self._slots: dict[str, asyncio.Semaphore] = {}
        super().__init__(name, config, clock)

    # -- the client ----------------------------------------------------------------------

    def reconfigure(self, config: Config) -> None:
        self.settings = config.sources[self.name]
        self.default_timeout = self.settings.timeout
        if self._client is not None and self.settings != self._client_settings:
            # a reload changed the server or credentials: new polls use a new client;
            # the old one closes at stop (polls in flight may still be using it)
            self._retired.append(self._client)
            self._client = None
            self._slots.clear()
        super().reconfigure(config)

    async def open(self) -> None:
        self.client()

    async def close(self) -> None:
        clients = [*self._retired, *([self._client] if self._client else [])]
        self._client, self._retired = None, []
        for client in clients:
            await client.aclose()

    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = _build_client(self.settings)
            self._client_settings = self.settings
        return self._client

    def _slot(self, url: httpx.URL) -> asyncio.Semaphore:
        origin = f"{url.scheme}://{url.host}:{url.port}"
        if origin not in self._slots:
            self._slots[origin] = asyncio.Semaphore(self.settings.max_connections)
        return self._slots[origin]

    # -- one poll ------------------------------------------------------------------------

    async def read(self, check: CheckConfig) -> Reading:
        client = self.client()
        method, path = ("POST", check.post) if check.post is not None else ("GET", check.get)
        assert path is not None  # the schema makes get: or post: present on an http check
        measure = check.measure or "value"
        request = client.build_request(
            method, path, json=check.body if method == "POST" else None,
            timeout=self.timeout_of(check))
        if measure == "cert_days" and request.url.scheme != "https":
            raise ReadError(f"measure: cert_days needs an https:// URL, not {request.url}")
        async with self._slot(request.url):
            response, latency, cert = await self._send(client, request, path, measure)
        server = f"{request.url.host}:{request.url.port or _default_port(request.url)}"
        return Reading(self._measured(check, measure, response, latency, cert, path),
                       server=server)

    async def _send(self, client: httpx.AsyncClient, request: httpx.Request, path: str,
                    measure: str) -> tuple[httpx.Response, float, bytes | None]:
        started = time.perf_counter()
        try:
            response = await client.send(request, stream=True)
            try:
                cert = _peer_cert(response) if measure == "cert_days" else None
                await response.aread()
            finally:
                await response.aclose()
        except httpx.HTTPError as e:
            raise ReadError(_transport_problem(e, request, path)) from None
        return response, time.perf_counter() - started, cert

    def _measured(self, check: CheckConfig, measure: str, response: httpx.Response,
                  latency: float, cert: bytes | None, path: str) -> Any:
        if measure == "status":
            return response.status_code
        if measure == "latency":
            return round(latency, 6)
        if measure == "cert_days":
            return _days_left(cert, path)
        if check.json_ is None and check.regex is None:
            return response.status_code
        if response.status_code >= 400:
            raise ReadError(f"HTTP {response.status_code} from {path}")
        if check.json_ is not None:
            return self._json_value(check.json_, response, path)
        return _regex_value(check.regex or "", response.text, path)

    def _json_value(self, expression: str, response: httpx.Response, path: str) -> Any:
        try:
            document = json.loads(response.content)
        except ValueError as e:
            raise ReadError(f"invalid JSON from {path}: {_short(str(e))} "
                            f"(body starts {_quote(response.text)})") from None
        found = jsonpath.search(expression, document)
        if found is None:
            raise ReadError(f"json: '{expression}' matched nothing in the response")
        if isinstance(found, (dict, list)):
            kind = "an object" if isinstance(found, dict) else f"a list of {len(found)}"
            raise ReadError(f"json: '{expression}' gave {kind}, not a single value")
        return found


# -- helpers ---------------------------------------------------------------------------------


def _build_client(settings: SourceConfig) -> httpx.AsyncClient:
    auth = None
    if settings.username:
        password = settings.password.get() if settings.password else ""
        auth = httpx.BasicAuth(settings.username, password)
    # the per-origin slots (HttpSource._slot) do the limiting; the pool only keeps
    # idle connections for reuse, enough for every slot of a few servers
    limits = httpx.Limits(max_connections=None,
                          max_keepalive_connections=settings.max_connections * 4)
    return httpx.AsyncClient(
        base_url=settings.base_url or "", headers={k: v.get() for k, v in settings.headers.items()},
        auth=auth, verify=settings.verify, limits=limits, timeout=settings.timeout,
        follow_redirects=True)


def _default_port(url: httpx.URL) -> int:
    return 443 if url.scheme == "https" else 80


def _transport_problem(error: httpx.HTTPError, request: httpx.Request, path: str) -> str:
    """What a person should read for a request that got no response."""
    host = f"{request.url.host}:{request.url.port or _default_port(request.url)}"
    if isinstance(error, httpx.TimeoutException):
        timeout = request.extensions.get("timeout", {}).get("read")
        within = f" within {timeout:g} s" if isinstance(timeout, (int, float)) else ""
        if isinstance(error, httpx.ConnectTimeout):
            return f"no connection to {host}{within}"
        return f"no answer from {path}{within}"
    cause = _root(error)
    if isinstance(cause, socket.gaierror):
        return f"DNS: cannot resolve host '{request.url.host}'"
    if isinstance(cause, ConnectionRefusedError):
        return f"connection refused by {host} (nothing listening?)"
    if isinstance(cause, ssl.SSLCertVerificationError):
        return f"TLS certificate of {host} not trusted: {cause.verify_message}"
    if isinstance(error, httpx.ConnectError):
        return f"cannot connect to {host}: {_short(str(cause) or type(cause).__name__)}"
    if isinstance(error, httpx.RemoteProtocolError):
        return f"{host} broke the HTTP exchange for {path}: {_short(str(error))}"
    return f"{path}: {type(error).__name__}: {_short(str(error))}"


def _root(error: BaseException) -> BaseException:
    """The innermost cause of an httpx error (socket.gaierror, ConnectionRefusedError)."""
    seen = error
    while True:
        nxt = seen.__cause__ or seen.__context__
        if nxt is None or nxt is seen:
            return seen
        seen = nxt


def _regex_value(pattern: str, text: str, path: str) -> Any:
    found = re.search(pattern, text)
    if found is None:
        raise ReadError(f"regex: '{pattern}' matched nothing in the response from {path}")
    value = found.group(1) if found.re.groups else found.group(0)
    return _number_or_text(value)


def _number_or_text(text: str | None) -> Any:
    """'12.5' from a page is the number 12.5 (for above:/below:); other text stays text."""
    if text is None:
        return None
    try:
        number = float(text)
    except ValueError:
        return text
    return number if math.isfinite(number) else text


def _short(text: str) -> str:
    return text if len(text) <= 200 else text[:200] + "…"


def _quote(text: str) -> str:
    return repr(text[:MAX_BODY_TEXT] + ("…" if len(text) > MAX_BODY_TEXT else ""))


# -- the server's certificate ----------------------------------------------------------------


def _peer_cert(response: httpx.Response) -> bytes | None:
    """The DER certificate the server presented on this response's connection."""
    stream = response.extensions.get("network_stream")
    ssl_object = stream.get_extra_info("ssl_object") if stream is not None else None
    return ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None


def _days_left(cert: bytes | None, path: str) -> float:
    if not cert:
        raise ReadError(f"no TLS certificate seen on the connection for {path}")
    try:
        not_after = cert_not_after(cert)
    except (ValueError, IndexError) as e:
        raise ReadError(f"cannot read the certificate's expiry date: {e}") from None
    return round((not_after - datetime.now(UTC)).total_seconds() / 86400, 3)


def cert_not_after(der: bytes) -> datetime:
    """The notAfter date of an X.509 certificate in DER (ssl gives no parser for the
    binary form, and the dict form is empty when verification is off)."""
    certificate = _der_children(_der_value(der, 0)[0])
    tbs = _der_children(certificate[0][1])
    if tbs[0][0] == 0xA0:  # the optional explicit version
        tbs = tbs[1:]
    validity = _der_children(tbs[3][1])  # serial, signature algorithm, issuer, validity
    tag, raw = validity[1]
    text = raw.decode("ascii").rstrip("Z")
    if tag == 0x17:  # UTCTime YYMMDDHHMMSS: 50..99 are 19xx (RFC 5280)
        year = int(text[:2])
        text = f"{1900 + year if year >= 50 else 2000 + year}{text[2:]}"
    return datetime.strptime(text[:14], "%Y%m%d%H%M%S").replace(tzinfo=UTC)


def _der_value(data: bytes, at: int) -> tuple[bytes, int, int]:
    """(content of the TLV at `at`, its tag, the offset after it)."""
    tag, length, at = data[at], data[at + 1], at + 2
    if length & 0x80:
        count = length & 0x7F
        length, at = int.from_bytes(data[at:at + count], "big"), at + count
    if at + length > len(data):
        raise ValueError("truncated certificate")
    return data[at:at + length], tag, at + length


def _der_children(content: bytes) -> list[tuple[int, bytes]]:
    children, at = [], 0
    while at < len(content):
        value, tag, at = _der_value(content, at)
        children.append((tag, value))
    return children
