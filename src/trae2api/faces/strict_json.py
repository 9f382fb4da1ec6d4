"""Request bodies parsed as strict JSON: orjson, no NaN/Infinity, valid UTF-8, bounded nesting.

FastAPI parses bodies with ``json.loads``, which accepts ``NaN`` and ``Infinity`` (not JSON) and
lets any nesting through to code that recurses (orjson refuses to encode deeper than 255). A
route class swaps in this parser; its errors become ordinary 400 envelopes.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

import orjson
from fastapi import Request, Response
from fastapi.routing import APIRoute

from trae2api.errors import InvalidRequest

MAX_DEPTH = 64  # far more than any chat request needs, far less than any recursion limit


class StrictJSONRequest(Request):
    """``json()`` with orjson; ``orjson.JSONDecodeError`` is a ``json.JSONDecodeError``, so
    FastAPI reports it as unparsable JSON; too deep a document is an ``InvalidRequest``."""

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            body = await self.body()
            value = orjson.loads(body)  # refuses NaN, Infinity, bad UTF-8 and 1024+ levels
            if body.count(b"[") + body.count(b"{") > MAX_DEPTH:
                check_depth(value)
            self._json = value
        return self._json


def check_depth(value: Any, limit: int = MAX_DEPTH) -> None:
    """Raise ``InvalidRequest`` when ``value`` nests arrays/objects deeper than ``limit``."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if not isinstance(item, dict | list):
            continue
        children = item.values() if isinstance(item, dict) else item
        if depth > limit:
            raise InvalidRequest(f"The JSON body is nested deeper than {limit} levels.")
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))


class StrictJSONRoute(APIRoute):
    """An ``APIRoute`` whose handler sees a ``StrictJSONRequest``."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def strict_handler(request: Request) -> Response:
            return await handler(StrictJSONRequest(request.scope, request.receive))

        return strict_handler
