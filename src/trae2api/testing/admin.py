"""The simulator's control API under ``/_sim/`` (no auth: it only ever listens on loopback).

It steers and reads ``SimState``; it must not implement any part of the Trae protocol itself.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from trae2api.testing.scenario import validate_script
from trae2api.testing.state import SimState

PREFIX = "/_sim"


def json_response(data: Any, status: int = 200) -> Response:
    """A JSON response rendered with orjson."""
    return Response(orjson.dumps(data), status_code=status, media_type="application/json")


async def read_json(request: Request) -> tuple[Any, bool]:
    """The parsed body and whether it was valid JSON."""
    raw = await request.body()
    try:
        return orjson.loads(raw), True
    except orjson.JSONDecodeError:
        return raw.decode(errors="replace"), False


class _Admin:
    def __init__(self, state: SimState) -> None:
        self.state = state

    async def stats(self, request: Request) -> Response:
        return json_response(self.state.stats())

    async def account(self, request: Request) -> Response:
        account = self.state.account
        return json_response(
            {
                "app_id": account.app_id,
                "client_id": account.client_id,
                "user_id": account.user_id,
                "initial_refresh_token": account.refresh_token,
                "current_refresh_token": self.state.current_refresh_token,
            }
        )

    async def last_chat(self, request: Request) -> Response:
        last = self.state.last_chat()
        return json_response(last if last is not None else {"headers": None, "body": None})

    async def last_agent_chat(self, request: Request) -> Response:
        last = self.state.last_agent_chat()
        return json_response(last if last is not None else {"headers": None, "body": None})

    async def config(self, request: Request) -> Response:
        body, ok = await read_json(request)
        if not ok or not isinstance(body, dict):
            return json_response({"error": "config takes a JSON object"}, 400)
        try:
            self.state.configure(**body)
        except (TypeError, ValueError) as exc:
            return json_response({"error": str(exc)}, 400)
        return json_response(self.state.stats())

    async def expire_access(self, request: Request) -> Response:
        self.state.expire_access_tokens()
        return json_response({"ok": True})

    async def expire_upload_credentials(self, request: Request) -> Response:
        self.state.images.expire_credentials()
        return json_response({"ok": True})

    async def images(self, request: Request) -> Response:
        return json_response({"images": self.state.images.images()})

    async def script(self, request: Request) -> Response:
        body, ok = await read_json(request)
        try:
            if not ok:
                raise ValueError("script takes JSON")
            events = validate_script(body)
        except ValueError as exc:
            return json_response({"error": str(exc)}, 400)
        self.state.push_script(events)
        return json_response({"ok": True, "pending_scripts": self.state.stats()["pending_scripts"]})

    async def reset(self, request: Request) -> Response:
        self.state.reset()
        return json_response(self.state.stats())

    async def reset_counters(self, request: Request) -> Response:
        self.state.reset_counters()
        return json_response(self.state.stats())


def admin_routes(state: SimState) -> list[Route]:
    """Routes: GET stats, account, last_chat, last_agent_chat, images (the committed ones); POST
    config, expire_access, expire_upload_credentials, script, reset_counters, reset."""
    admin = _Admin(state)
    return [
        Route(f"{PREFIX}/stats", admin.stats, methods=["GET"]),
        Route(f"{PREFIX}/account", admin.account, methods=["GET"]),
        Route(f"{PREFIX}/last_chat", admin.last_chat, methods=["GET"]),
        Route(f"{PREFIX}/last_agent_chat", admin.last_agent_chat, methods=["GET"]),
        Route(f"{PREFIX}/config", admin.config, methods=["POST"]),
        Route(f"{PREFIX}/expire_access", admin.expire_access, methods=["POST"]),
        Route(
            f"{PREFIX}/expire_upload_credentials",
            admin.expire_upload_credentials,
            methods=["POST"],
        ),
        Route(f"{PREFIX}/images", admin.images, methods=["GET"]),
        Route(f"{PREFIX}/script", admin.script, methods=["POST"]),
        Route(f"{PREFIX}/reset_counters", admin.reset_counters, methods=["POST"]),
        Route(f"{PREFIX}/reset", admin.reset, methods=["POST"]),
    ]
