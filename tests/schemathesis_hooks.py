"""Schemathesis hooks for trae2api (``SCHEMATHESIS_HOOKS=schemathesis_hooks``, ``tests`` on the
path): the ``openai_error_envelope`` check, used by ``test_schemathesis.py`` and ``scripts/fuzz``.
"""

from __future__ import annotations

from typing import Any

import orjson
import schemathesis

KEYS = {"message", "type", "param", "code"}


@schemathesis.check
def openai_error_envelope(ctx: Any, response: Any, case: Any) -> None:
    """Every 4xx and 5xx body is ``{"error": {message, type, param, code}}`` and nothing else
    (Anthropic's ``{"type": "error", "error": {type, message}}`` on ``/v1/messages…``)."""
    if response.status_code < 400:
        return
    try:
        payload = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        raise AssertionError(f"HTTP {response.status_code} body is not JSON") from None
    if case.path.startswith("/v1/messages"):
        anthropic_error_envelope(payload, response.status_code)
        return
    error = payload.get("error") if isinstance(payload, dict) else None
    # Errors from a Trae business code also name it (dialect §7): an optional ``trae_code``.
    if (
        not isinstance(error, dict)
        or set(payload) != {"error"}
        or set(error) - {"trae_code"} != KEYS
    ):
        raise AssertionError(f"HTTP {response.status_code} body is not an OpenAI error envelope")
    if not isinstance(error["message"], str) or not isinstance(error["type"], str):
        raise AssertionError("error.message and error.type must be strings")


def anthropic_error_envelope(payload: Any, status: int) -> None:
    """Anthropic's error body: exactly ``type: "error"`` and ``error: {type, message}``."""
    error = payload.get("error") if isinstance(payload, dict) else None
    if (
        not isinstance(error, dict)
        or payload.get("type") != "error"
        or set(payload) != {"type", "error"}
        or set(error) != {"type", "message"}
        or not all(isinstance(error[key], str) for key in ("type", "message"))
    ):
        raise AssertionError(f"HTTP {status} body is not an Anthropic error envelope")
