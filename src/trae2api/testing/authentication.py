"""The simulator's header authentication, one step shared by every endpoint behind a token.

Owns the rejections of protocol §3 as the simulator words them (HTTP 401 code 1001; HTTP 400
code 4001 naming the header or field); it must not know which headers a dialect requires.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial

from starlette.responses import Response

from trae2api.testing.admin import json_response
from trae2api.testing.state import SimState
from trae2api.testing.validation import Invalid, check_ide_headers

NOT_AUTHENTICATED = {"code": 1001, "message": "not authenticated"}


def invalid_response(exc: Invalid, kind: str) -> Response:
    """HTTP 400 code 4001 for a bad ``header`` or body ``field`` (``kind``), naming it."""
    body = {"code": 4001, "message": f"invalid {kind} {exc.field}: {exc.reason}"}
    body["header" if kind == "header" else "field"] = exc.field
    return json_response(body, 400)


def authenticate(
    state: SimState,
    headers: Mapping[str, str],
    token: str | None,
    check_headers: Callable[[Mapping[str, str]], None],
) -> str | Response:
    """The user id owning ``token`` once ``check_headers`` accepts the headers, else the
    (counted) rejection to send; an accepted request's device is noted."""
    owner = None if token is None else state.access_token_owner(token)
    if owner is None:
        state.count("auth_rejections")
        return json_response(NOT_AUTHENTICATED, 401)
    try:
        check_headers(headers)
    except Invalid as exc:
        state.count("header_rejections")
        return invalid_response(exc, "header")
    state.note_device(owner, headers["x-device-id"], headers["x-machine-id"])
    return owner


def authenticate_ide(state: SimState, headers: Mapping[str, str]) -> str | Response:
    """``authenticate`` with the legacy §3 headers (model list, chat, upload credentials)."""
    check = partial(check_ide_headers, app_id=state.app_id)
    return authenticate(state, headers, headers.get("x-ide-token", ""), check)
