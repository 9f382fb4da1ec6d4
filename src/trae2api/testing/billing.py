"""The account host's balance endpoint (dialect §7): ``POST /trae/api/v2/pay/ide_user_ent_usage``.

Authenticated like the agent calls (``Authorization: Cloud-IDE-JWT <token>``; ``X-Cloudide-Token``
and ``X-Ide-Token``, when sent, carry the same token) else HTTP 401 ``{"code": 1001, ...}``; a
JSON body exactly ``{"require_usage": true}`` else HTTP 400 ``{"code": 4001, "message",
"field"}``. Answers, with no ``code`` envelope, ``{"user_entitlement_pack_list": [...]}`` whose
``entitlement_base_info.quota.credits_limit`` minus ``usage.credits_amount``, summed, is the
``ide_credits`` that ``notify_usage`` reports (``credits.pack_list``). Routes only; the numbers
live in ``SimState.credits``.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from trae2api.testing.admin import json_response, read_json
from trae2api.testing.authentication import NOT_AUTHENTICATED
from trae2api.testing.state import SimState

BALANCE_PATH = "/trae/api/v2/pay/ide_user_ent_usage"
AUTH_SCHEME = "Cloud-IDE-JWT"


def _token(request: Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme != AUTH_SCHEME or not token.strip():
        return None
    for name in ("x-cloudide-token", "x-ide-token"):
        if request.headers.get(name, token) != token:
            return None
    return token


class _Billing:
    def __init__(self, state: SimState) -> None:
        self.state = state

    async def balance(self, request: Request) -> Response:
        token = _token(request)
        if token is None or self.state.access_token_owner(token) is None:
            self.state.count("auth_rejections")
            return json_response(NOT_AUTHENTICATED, 401)
        body, ok = await read_json(request)
        if not ok or body != {"require_usage": True} or not isinstance(body["require_usage"], bool):
            self.state.count("body_rejections")
            reason = 'the body must be {"require_usage": true}'
            return json_response({"code": 4001, "message": reason, "field": "require_usage"}, 400)
        self.state.count("balance_checks")
        return json_response({"user_entitlement_pack_list": self.state.credits.packs()})


def billing_routes(state: SimState) -> list[Route]:
    """The balance route."""
    return [Route(BALANCE_PATH, _Billing(state).balance, methods=["POST"])]
