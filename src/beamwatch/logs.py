"""Structured, quiet-by-default logging: one line per event, key=value or JSON."""

from __future__ import annotations

import json
import logging
import sys
import time

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


class KeyValueFormatter(logging.Formatter):
    def __init__(self, as_json: bool = False):
        super().__init__()
        self.as_json = as_json

    def format(self, record: logging.LogRecord) -> str:
        fields = {k: v for k, v in record.__dict__.items() if k not in _STANDARD}
        when = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        base = {"time": f"{when}.{int(record.msecs):03d}Z", "level": record.levelname.lower(),
                "logger": record.name, "msg": record.getMessage(), **fields}
        if record.exc_info:
            base["error"] = self.formatException(record.exc_info)
        if self.as_json:
            return json.dumps(base, default=str)
        return " ".join(f"{k}={_kv(v)}" for k, v in base.items())


def _kv(value: object) -> str:
    text = str(value)
    return json.dumps(text) if (" " in text or "=" in text or not text) else text


def setup(verbosity: int = 0, as_json: bool = False) -> None:
    """0: warnings only (quiet by default); 1: info; 2+: debug."""
    level = logging.WARNING if verbosity <= 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(KeyValueFormatter(as_json))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("alembic", "httpx", "httpcore", "apprise"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))
