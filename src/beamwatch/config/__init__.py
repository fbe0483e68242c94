"""The config language: schema, loader with line numbers, cross-checks."""

from .loader import ConfigError, ConfigIssue, load_config, parse_config
from .schema import CheckConfig, Config
from .types import Secret, format_duration, parse_duration

__all__ = [
    "CheckConfig", "Config", "ConfigError", "ConfigIssue", "Secret", "format_duration",
    "load_config", "parse_config", "parse_duration",
]
