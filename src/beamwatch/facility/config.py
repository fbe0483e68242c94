"""facility.yaml: which database the beamlines share, and which of them to show.

    facility: Diamond MX
    storage: {url: "postgresql+psycopg://beamwatch@db/beamwatch"}
    beamlines: [i03, i04, i24]   # optional: default every beamwatch schema found
    monitor_down_after: 30s      # optional: a newer heartbeat than this is alive
    web: {listen: "127.0.0.1:8090"}  # optional: where `beamwatch facility serve` listens

Strict like the beamline config: unknown keys are errors, each said as
FILE:LINE:COL: key: message; ${ENV} and `*_file` secrets work the same way.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import ValidationError, field_validator

from ..config.loader import (
    ConfigError,
    ConfigIssue,
    _plain,
    _Positions,
    _pydantic_issues,
    _Resolver,
    yaml_mapping,
)
from ..config.schema import Strict, WebConfig, schema_for
from ..config.types import Duration


class FacilityStorage(Strict):
    url: str

    @field_validator("url")
    @classmethod
    def _postgres(cls, url: str) -> str:
        if not url.startswith("postgresql"):
            raise ValueError("a facility shares one PostgreSQL: postgresql+psycopg://…")
        return url


class FacilityWeb(Strict):
    listen: str = "127.0.0.1:8090"  # `beamwatch facility serve`: HOST:PORT (port 0: any)

    @field_validator("listen")
    @classmethod
    def _host_port(cls, v: str) -> str:
        if WebConfig(listen=v).address is None:
            raise ValueError("web.listen: HOST:PORT to serve the facility page on")
        return v.strip()

    @property
    def address(self) -> tuple[str, int]:
        host, _, port = self.listen.rpartition(":")
        return host.strip("[]"), int(port)


class FacilityConfig(Strict):
    facility: str
    storage: FacilityStorage
    web: FacilityWeb = FacilityWeb()
    # beamline names or their schemas (I04-1 and i04_1 are the same); None: all found
    beamlines: list[str] | None = None
    monitor_down_after: Duration = 30.0

    @property
    def schemas(self) -> list[str] | None:
        if self.beamlines is None:
            return None
        return list(dict.fromkeys(schema_for(b) for b in self.beamlines))


def load_facility(path: str | Path, env: dict[str, str] | None = None) -> FacilityConfig:
    p = Path(path)
    file = str(p)
    try:
        text = p.read_text()
    except OSError as e:
        raise ConfigError([ConfigIssue(file, 1, 1, "", f"cannot read the file: {e.strerror}")]
                          ) from None
    doc = yaml_mapping(text, file)
    pos = _Positions()
    pos.record(doc)
    resolver = _Resolver(file, pos, dict(os.environ) if env is None else env, p.parent)
    data = resolver.resolve(_plain(doc))
    if resolver.issues:
        raise ConfigError(resolver.issues)
    try:
        return FacilityConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(_pydantic_issues(e, file, pos)) from None
