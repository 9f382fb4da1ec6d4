"""Logging set-up: structlog for our events and for the stdlib loggers (uvicorn, httpx).

Redaction is a processor, so no log line can carry a secret value it was told about, an
``Authorization`` header, or a field named like a credential. It must not decide what to log.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
from collections.abc import Iterable, MutableMapping
from typing import Any
from urllib.parse import urlsplit

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

REDACTED = "[REDACTED]"
_SENSITIVE_KEY = re.compile(
    r"(authorization|api[_-]?key|token|secret|password|credential|cookie)", re.IGNORECASE
)
# Tokens that slipped into free text: "Bearer xyz", "Cloud-IDE-JWT xyz", and JWT-shaped strings.
_SENSITIVE_TEXT = re.compile(
    r"((?:bearer|cloud-ide-jwt)\s+)[^\s\"',;]+|eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*",
    re.IGNORECASE,
)
# Counts of tokens are usage numbers, not credentials.
_USAGE_KEYS = {"prompt_tokens", "completion_tokens", "total_tokens", "reasoning_tokens"}


class SecretRegistry:
    """The secret values known at run time (tokens, client keys, the Redis password)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: frozenset[str] = frozenset()

    def add(self, *values: str | None) -> None:
        # Very short values would redact ordinary words; real credentials are long.
        fresh = {value for value in values if value and len(value) >= 8}
        if fresh - self._values:
            with self._lock:
                self._values = self._values | fresh

    def add_url_password(self, url: str | None) -> None:
        """The password of a ``scheme://user:password@host`` URL (``REDIS_URL``), if any."""
        if url:
            self.add(urlsplit(url).password)

    def scrub(self, text: str) -> str:
        for value in self._values:
            if value in text:
                text = text.replace(value, REDACTED)
        return _SENSITIVE_TEXT.sub(lambda m: (m.group(1) or "") + REDACTED, text)


secrets_registry = SecretRegistry()


def _redact_value(key: str, value: Any) -> Any:
    if key not in _USAGE_KEYS and _SENSITIVE_KEY.search(key) and not isinstance(value, bool):
        if isinstance(value, int | float) or value is None:
            return value
        return REDACTED
    if isinstance(value, str):
        return secrets_registry.scrub(value)
    if isinstance(value, MutableMapping):
        return {k: _redact_value(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact_value(key, item) for item in value]
    if isinstance(value, BaseException):
        return secrets_registry.scrub(repr(value))
    return value


def redact(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """structlog processor: drop every known secret from every field of the event."""
    for key, value in list(event_dict.items()):
        event_dict[key] = _redact_value(key, value)
    return event_dict


def _scrub_rendered(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    # uvicorn's colourised duplicate of the message is noise in structured logs.
    event_dict.pop("color_message", None)
    # Exception text is rendered late (format_exc_info): scrub it once more.
    for key in ("exception", "event"):
        if isinstance(event_dict.get(key), str):
            event_dict[key] = secrets_registry.scrub(event_dict[key])
    return event_dict


def configure_logging(level: str = "INFO", fmt: str = "auto") -> None:
    """Route structlog and the stdlib loggers through one redacting pipeline."""
    as_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.stdlib.ExtraAdder(),
        redact,
    ]
    renderer: Processor = (
        structlog.processors.JSONRenderer()
        if as_json
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    final: list[Processor] = [structlog.processors.format_exc_info, _scrub_rendered]
    structlog.configure(
        # filter_by_level first: a filtered event costs no timestamp or redaction (hot path).
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *final, renderer],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    _quiet(["httpx", "httpcore", "hpack"], logging.WARNING)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True


def _quiet(names: Iterable[str], level: int) -> None:
    # httpx logs every request line at INFO; our own request log is enough.
    for name in names:
        logging.getLogger(name).setLevel(level)
