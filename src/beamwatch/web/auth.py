"""Who is asking: reading is open on the configured interface; a change (ack,
silence, mode) needs an identity, and is logged under it.

Two ways to have one:
- `Authorization: Bearer TOKEN` with a token of `web.tokens` (NAME: TOKEN): the
  change is NAME's. Tokens are compared in constant time.
- `web.trusted_proxy_header` (e.g. X-Forwarded-User) set by a reverse proxy that
  authenticated the person — honoured only when the connection comes from one of
  `web.trusted_proxies`, so nobody else can claim a name by sending the header.
  Such a request must also carry `X-Requested-With` (any value): a browser sends a
  custom header only from a page of the same origin (no CORS is allowed here), so
  another site cannot make a logged-in person's browser change anything (CSRF).

A bearer token is never sent by a browser on its own, so it needs no such check.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable

from fastapi import HTTPException, Request

from ..config.schema import WebConfig

NAME_MAX = 100


def identity(web: Callable[[], WebConfig]) -> Callable[[Request], str]:
    """A FastAPI dependency: the name a change is made by, else 401 (nothing done)."""

    def who(request: Request) -> str:
        cfg = web()
        auth = request.headers.get("authorization", "")
        scheme, _, token = auth.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            for name, secret in cfg.tokens.items():
                if hmac.compare_digest(secret.get().encode(), token.strip().encode()):
                    return name
            raise _unauthorized("the bearer token is not one of web.tokens")
        header = cfg.trusted_proxy_header
        if header and (user := request.headers.get(header, "").strip()):
            peer = request.client.host if request.client else ""
            if peer not in cfg.trusted_proxies:
                raise _unauthorized(f"{header} is trusted only from web.trusted_proxies")
            if "x-requested-with" not in request.headers:
                raise HTTPException(403, "a change needs the X-Requested-With header "
                                         "(sent by beamwatch's own pages)")
            return user[:NAME_MAX]
        raise _unauthorized("a change needs an identity: Authorization: Bearer TOKEN "
                            "(web.tokens)" + (f", or {header} from the proxy" if header
                                              else ""))

    return who


def _unauthorized(why: str) -> HTTPException:
    return HTTPException(401, why, headers={"WWW-Authenticate": "Bearer"})
