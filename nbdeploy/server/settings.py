"""Triton's trace and logging settings (``/v2/trace/setting``, ``/v2/logging`` and their
gRPC twins), in Triton's shapes so tools that read or set them work.

Logging settings are live: they set the level of the server's ``nbdeploy`` loggers.
Trace settings are kept (globally and per model) and answered, but this server records
no traces; every answer says so in ``"recording"``, an nbdeploy key next to Triton's.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TypeAlias

from ..errors import ProtocolError

__all__ = ["LOG_DEFAULTS", "TRACE_DEFAULTS", "Setting", "Settings"]

Setting: TypeAlias = str | int | bool | list[str]
"""One setting's value, as Triton's JSON carries it."""

TRACE_DEFAULTS: dict[str, Setting] = {
    "trace_level": ["OFF"], "trace_rate": "1000", "trace_count": "-1", "log_frequency": "0",
    "trace_file": "", "trace_mode": "triton",
}  # fmt: skip
TRACE_LEVELS = {"OFF", "TIMESTAMPS", "TENSORS"}
NOT_RECORDING = "off: this server keeps trace settings but records no traces"
LOG_DEFAULTS: dict[str, Setting] = {
    "log_file": "", "log_info": True, "log_warning": True, "log_error": True,
    "log_verbose_level": 0, "log_format": "default",
}  # fmt: skip


@dataclass
class Settings:
    """The server's trace settings (global, and overrides by model) and log settings."""

    trace: dict[str, Setting] = field(default_factory=lambda: dict(TRACE_DEFAULTS))
    model_trace: dict[str, dict[str, Setting]] = field(default_factory=dict)
    log: dict[str, Setting] = field(default_factory=lambda: _current_log_settings())

    def trace_settings(self, model: str = "") -> dict[str, Setting]:
        """The settings in force for ``model`` (or globally)."""
        return {**self.trace, **self.model_trace.get(model, {}), "recording": NOT_RECORDING}

    def update_trace(self, changes: Mapping[str, object], model: str = "") -> dict[str, Setting]:
        """Apply ``changes`` (a ``None`` value clears a model's override of that key)."""
        checked = {key: _trace_value(key, value) for key, value in changes.items()}
        target = self.model_trace.setdefault(model, {}) if model else self.trace
        for key, value in checked.items():
            if value is not None:
                target[key] = value
            elif model:  # back to the global setting
                target.pop(key, None)
            else:
                target[key] = TRACE_DEFAULTS[key]
        return self.trace_settings(model)

    def update_log(self, changes: Mapping[str, object]) -> dict[str, Setting]:
        """Apply ``changes`` and set the server's log level to match."""
        for key, value in changes.items():
            self.log[key] = _log_value(key, value)
        logging.getLogger("nbdeploy").setLevel(_level(self.log))
        return dict(self.log)


def _trace_value(key: str, value: object) -> Setting | None:
    if key not in TRACE_DEFAULTS:
        raise ProtocolError(f"unknown trace setting '{key}'; use {', '.join(TRACE_DEFAULTS)}")
    if value is None:
        return None
    if key == "trace_level":
        given = value if isinstance(value, list) else [value]
        levels = [v for v in given if isinstance(v, str) and v in TRACE_LEVELS]
        if not levels or len(levels) != len(given):
            raise ProtocolError(f"trace_level must be a list of {sorted(TRACE_LEVELS)}")
        return levels
    if key == "trace_mode" and value not in ("triton", "opentelemetry"):
        raise ProtocolError("trace_mode must be 'triton' or 'opentelemetry'")
    if key in ("trace_rate", "trace_count", "log_frequency"):
        text = str(value[0] if isinstance(value, list) and value else value)
        if not text.lstrip("-").isdigit() or len(text) > 18:
            raise ProtocolError(f"{key} must be an integer, not {value!r}")
        return text
    if not isinstance(value, str):
        raise ProtocolError(f"{key} must be a string")
    return value


def _log_value(key: str, value: object) -> Setting:
    if key not in LOG_DEFAULTS:
        raise ProtocolError(f"unknown log setting '{key}'; use {', '.join(LOG_DEFAULTS)}")
    if key == "log_file":
        if value not in ("", LOG_DEFAULTS["log_file"]):
            raise ProtocolError(
                "log_file cannot be changed over the API (it would let any client write any "
                "file); the server logs to server.log in its repository"
            )
        return value
    if key == "log_verbose_level":
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ProtocolError("log_verbose_level must be an integer >= 0")
        return value
    if key == "log_format":
        if value not in ("default", "ISO8601"):
            raise ProtocolError("log_format must be 'default' or 'ISO8601'")
        return value
    if not isinstance(value, bool):
        raise ProtocolError(f"{key} must be true or false")
    return value


def _current_log_settings() -> dict[str, Setting]:
    """Triton's log settings as the server's logging stands now."""
    level = logging.getLogger("nbdeploy").getEffectiveLevel()
    return {
        **LOG_DEFAULTS,
        "log_info": level <= logging.INFO,
        "log_warning": level <= logging.WARNING,
        "log_verbose_level": int(level < logging.INFO),
    }


def _level(log: Mapping[str, Setting]) -> int:
    if log["log_verbose_level"] not in (0, False):
        return logging.DEBUG
    if log["log_info"]:
        return logging.INFO
    if log["log_warning"]:
        return logging.WARNING
    return logging.ERROR if log["log_error"] else logging.CRITICAL
