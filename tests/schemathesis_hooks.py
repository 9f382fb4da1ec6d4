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
    """Every 4xx and 5xx body is ``{"error": {message, type, param, code}}`` and nothing else."""
    if response.status_code < 400:
        return
    try:
        payload = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        raise AssertionError(f"HTTP {response.status_code} body is not JSON") from None
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
