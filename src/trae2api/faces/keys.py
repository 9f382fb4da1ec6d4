"""Where client keys come from: ``AUTH_TOKEN`` (named ``key-1``…) and ``API_KEYS_FILE``.

The file holds one ``name: key`` per line (``#`` starts a comment), so one key can be revoked
alone. Names are what logs and metrics show; a key itself is never logged or echoed.
"""

from __future__ import annotations

import re
from pathlib import Path

import structlog

from trae2api.config import Settings
from trae2api.errors import ConfigError
from trae2api.faces.runtime import Runtime
from trae2api.faces.security import ClientKeys
from trae2api.log import secrets_registry

log = structlog.get_logger(__name__)

RECOMMENDED_KEY_LENGTH = 16
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_VARIABLE = "API_KEYS_FILE"


def client_key_pairs(settings: Settings) -> list[tuple[str, str]]:
    """Every ``(name, key)`` the settings allow; raises ``ConfigError`` on a bad keys file."""
    pairs = [(f"key-{index}", key) for index, key in enumerate(settings.client_keys, 1)]
    if settings.api_keys_file is not None:
        pairs += read_keys_file(settings.api_keys_file)
    _check_unique(pairs)
    return pairs


def read_keys_file(path: Path) -> list[tuple[str, str]]:
    """The ``name: key`` pairs of ``path``; the error names the line, never the key."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "it is not UTF-8 text"
        raise ConfigError(_VARIABLE, f"cannot read {path}: {reason}") from None
    pairs = []
    for number, line in enumerate(text.splitlines(), 1):
        content = line.split("#", 1)[0].strip()
        if content:
            pairs.append(_parse_line(path, number, content))
    if not pairs:
        raise ConfigError(_VARIABLE, f"{path} holds no keys (expected 'name: key' lines)")
    return pairs


def _parse_line(path: Path, number: int, content: str) -> tuple[str, str]:
    name, colon, key = (part.strip() for part in content.partition(":"))
    where = f"{path} line {number}"
    if not colon or not key:
        raise ConfigError(_VARIABLE, f"{where} is not of the form 'name: key'")
    if not _NAME.match(name):
        raise ConfigError(
            _VARIABLE,
            f"{where}: the name must be 1-64 letters, digits, '.', '_' or '-' "
            "(it appears in logs and metrics)",
        )
    if any(char.isspace() for char in key):
        raise ConfigError(_VARIABLE, f"{where}: the key of {name!r} contains whitespace")
    return name, key


def _check_unique(pairs: list[tuple[str, str]]) -> None:
    names: set[str] = set()
    keys: set[str] = set()
    for name, key in pairs:
        if name in names:
            raise ConfigError(_VARIABLE, f"the key name {name!r} is used twice")
        if key in keys:
            raise ConfigError(_VARIABLE, f"the key of {name!r} is the same as another key's")
        names.add(name)
        keys.add(key)


def warn_short_keys(pairs: list[tuple[str, str]]) -> None:
    """Log (by name) every key shorter than the recommended length."""
    for name, key in pairs:
        if len(key) < RECOMMENDED_KEY_LENGTH:
            log.warning(
                "client_key_short",
                name=name,
                length=len(key),
                recommended=RECOMMENDED_KEY_LENGTH,
                hint="use a long random key, e.g. `openssl rand -hex 24`",
            )


def reload_keys(runtime: Runtime, settings: Settings) -> None:
    """SIGHUP: read ``API_KEYS_FILE`` again; on an error the keys in use stay in force."""
    try:
        pairs = client_key_pairs(settings)
    except ConfigError as exc:
        log.error("client_keys_reload_failed", error=str(exc), kept="the previous keys")
        return
    secrets_registry.add(*(key for _, key in pairs))
    warn_short_keys(pairs)
    runtime.client_keys = ClientKeys.named(pairs)
    log.info("client_keys_reloaded", names=[name for name, _ in pairs])
