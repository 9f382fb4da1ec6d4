"""The simulated Trae upstream as an ASGI app: token exchange, model list, legacy chat (§2–§7).

It enforces the contract strictly and answers from ``SimState``; it must not be lenient.

Scenario directives, written anywhere in the LAST user message (``user_input``), combinable;
they are removed from the text the default reply echoes:

    [sim:queue N]            queue_begin {"position": N}, N request_wait_in_queue events
                             (position N..1, queue_id "q1", 0.2 s apart), queue_end {}, reply
    [sim:wait S]             S seconds (float) of silence after the headers, before the first event
    [sim:slow MS]            MS milliseconds before every output event
    [sim:long N]             the answer is exactly N output chunks: "word1 word2 ... wordN"
    [sim:error CODE]         the stream is one error event {"code": CODE, "message": ...}
    [sim:transient CODE K]   the first K chats with this same last user text (counted since the
                             last reset) are metadata then error {"code": CODE} before any output;
                             later ones answer normally (dialect §7: 3003 is retried)
    [sim:cumulative]         output.response and reasoning_content carry the whole text so far
                             instead of deltas (dialect §7), each field's last snapshot sent
                             twice; a frame that advances one field has "" in the other
    [sim:pieces a|b|c]       the answer is exactly these deltas ("a", "b", "c"; "|" separates,
                             "]" cannot occur): [sim:pieces ha|ha|ha] streams "ha" three times
    [sim:midstream-error C]  metadata, about half the output, then error {"code": C, ...}; no done
    [sim:nodone]             no done event at the end
    [sim:nousage]            no token_usage event
    [sim:done-empty]         the done event's data is {}
    [sim:finish X]           done {"finish_reason": "X"}
    [sim:compact]            lenient framing: a ": comment" line first, then "id:N", "event:x",
                             "data:{...}" lines (no spaces) and no blank line between events
    [sim:noise]              adds progress_notice (data is a JSON string), heartbeat, ping,
                             timing_cost and extra_info events, which a client must ignore
    [sim:msg-variant]        error events carry "msg" instead of "message"
    [sim:http STATUS]        HTTP STATUS with an HTML body instead of a stream
    [sim:reset]              the TCP connection is reset before any byte of a response: httpx
                             raises ReadError (connection reset) or RemoteProtocolError
    [sim:bridge-call NAME {json}]  the answer is a prompt-bridge call block, exactly
                             '<tool_call>\n{"name": NAME, "arguments": {json}}\n</tool_call>'
                             (json.dumps spacing), streamed in pieces cut inside "<tool_call>"
                             ("<to" + "ol_call>..."), twice inside the JSON and inside
                             "</tool_call>"; several directives give several blocks, one per line
    [sim:bridge-malformed]   a block whose JSON is broken ('{"name": "get_weather", "arguments":
                             {broken'), which a gateway must pass on as text
    [sim:bridge-unterminated]  a block with valid JSON that never closes (no </tool_call>)
    [sim:text-then-call]     "Let me use a tool for that.\n" before the bridge blocks
When the last user text holds <tool_response name="N" ...>content</tool_response> blocks (bridged
tool results), the answer is 'Tool results: N → content' (several joined by "; "), whatever the
bridge directives say; directives are read from the text outside those blocks.
An unknown or malformed directive answers error {"code": 4001} naming it (typos fail loudly).
Model deepseek-R1 streams reasoning_content deltas ("Let me think about ...") before the answer.
The agent dialect's endpoints and directives are described in ``trae2api.testing.agent``; the
transport faults (``[sim:fault NAME]``, ``/_sim/fault``) in ``trae2api.testing.faults``.

Switches ``exchange_endpoint`` and ``legacy_endpoints`` false turn the exchange, or the legacy model
list and chat, into HTML 404 pages before any check (a host without that route).
Choices where protocol.md is silent: a bad/expired ``x-ide-token`` is HTTP 401
{"code": 1001, "message": "not authenticated"}; every other header problem, including a wrong
``x-app-id``, is HTTP 400 {"code": 4001, "message": ..., "header": <name>}; a chat body problem is
HTTP 400 {"code": 4001, "message": ..., "field": <dotted path>}. Checks run in this order:
``fail_next_chats`` (HTML error), token, headers, Content-Type, body (``multi_media`` included:
``trae2api.testing.images_seen``), the ``legacy_chat`` mode (dialect §7: ``busy`` answers
in-stream 3003 to every chat, ``dying`` 4023 to names of the agent table and 3003 to the rest),
images for a known model without ``multimodal: true``
(in-stream 4001 "model does not accept images"), then a scripted answer if one is queued, then
directives [sim:http]/[sim:reset], version (4120), model (4023), other directives. The default
reply ends with `` [saw N image(s): <w>x<h> <format> sha256:<12 hex>; ...]`` when images came.
"""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from trae2api.testing.admin import admin_routes, json_response, read_json
from trae2api.testing.agent import agent_routes
from trae2api.testing.authentication import authenticate_ide, invalid_response
from trae2api.testing.billing import billing_routes
from trae2api.testing.faults import (
    FaultBoard,
    chat_fault_response,
    exchange_fault_response,
    fault_routes,
    find_chat_fault,
)
from trae2api.testing.image_service import image_routes
from trae2api.testing.images_seen import NO_IMAGES, accepts_images, check_multi_media
from trae2api.testing.plan_sender import RAW_SEND_KEY, html_error, respond
from trae2api.testing.scenario import Plan, error_frame, plan_chat, plan_script
from trae2api.testing.state import SimState
from trae2api.testing.tokens import INVALID_PARAMETER_CODE, ExchangeRejected
from trae2api.testing.validation import (
    ChatRequest,
    Invalid,
    check_chat_body,
    check_exchange_body,
)

EXCHANGE_PATH = "/cloudide/api/v3/trae/oauth/ExchangeToken"
MODEL_LIST_PATH = "/api/ide/v1/model_list"
CHAT_PATH = "/api/ide/v1/chat"
MODEL_LIST_TYPES = frozenset({"chat", "llm_raw_chat"})
_COMPLETION_ID_BASE = 7_000_000_000


def _metadata(error: tuple[str, str] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "RequestId": secrets.token_hex(16),
        "Action": "ExchangeToken",
        "Version": "v3",
    }
    if error is not None:
        meta["Error"] = {"Code": error[0], "Message": error[1]}
    return meta


def _exchange_error(code: str, message: str) -> Response:
    return json_response({"ResponseMetadata": _metadata((code, message))}, 400)


class _Upstream:
    def __init__(self, state: SimState, faults: FaultBoard) -> None:
        self.state = state
        self.faults = faults

    async def exchange(self, request: Request) -> Response:
        if not self.state.exchange_endpoint:
            return html_error(404)
        body, ok = await read_json(request)
        fault = self.faults.take("exchange")
        if fault is not None:
            return exchange_fault_response(fault)
        try:
            if not request.headers.get("content-type", "").startswith("application/json"):
                raise Invalid("Content-Type", "must be application/json")
            client_id, refresh_token, user_id = check_exchange_body(body if ok else None)
        except Invalid as exc:
            self.state.count("exchanges_rejected")
            detail = f"Invalid parameter: {exc.field} {exc.reason}"
            return _exchange_error(INVALID_PARAMETER_CODE, detail)
        try:
            result = self.state.exchange(client_id, refresh_token, user_id)
        except ExchangeRejected as exc:
            await self._exchange_delay()
            return _exchange_error(exc.code, exc.message)
        await self._exchange_delay()
        return json_response(
            {
                "ResponseMetadata": _metadata(),
                "Result": {
                    "Token": result.token,
                    "TokenExpireAt": int(result.token_expire_at * 1000),
                    "RefreshToken": result.refresh_token,
                    "RefreshExpireAt": int(result.refresh_expire_at * 1000),
                },
            }
        )

    async def _exchange_delay(self) -> None:
        if self.state.exchange_delay > 0:
            await asyncio.sleep(self.state.exchange_delay)

    async def model_list(self, request: Request) -> Response:
        if not self.state.legacy_endpoints:
            return html_error(404)
        if self.state.model_list_fail:
            return html_error(503)
        owner = authenticate_ide(self.state, request.headers)
        if isinstance(owner, Response):
            return owner
        if request.query_params.get("type") not in MODEL_LIST_TYPES:
            reason = "query parameter type must be chat or llm_raw_chat"
            return json_response({"code": 4001, "message": reason, "field": "type"}, 400)
        self.state.count("model_lists")
        return json_response({"model_configs": self.state.models()})

    async def chat(self, request: Request) -> Response:
        if not self.state.legacy_endpoints:
            return html_error(404)
        body, ok = await read_json(request)
        ordinal = self.state.record_chat(dict(request.headers), body)
        failure = self.state.take_chat_failure()
        if failure is not None:
            return html_error(failure)
        owner = authenticate_ide(self.state, request.headers)
        if isinstance(owner, Response):
            return owner
        content_type = request.headers.get("content-type", "")
        if not content_type.lower().startswith("application/json"):
            self.state.count("header_rejections")
            return invalid_response(Invalid("content-type", "must be application/json"), "header")
        try:
            version_code = int(request.headers["x-ide-version-code"])
            chat = check_chat_body(body if ok else None, version_code=version_code)
            note = check_multi_media(body["multi_media"], self.state.images, owner)
        except Invalid as exc:
            self.state.count("body_rejections")
            return invalid_response(exc, "field")
        return self._answer(dataclasses.replace(chat, image_note=note), version_code, ordinal)

    def _answer(self, chat: ChatRequest, version_code: int, ordinal: int) -> Response:
        dying = self._dying(chat.model_name)
        if dying is not None:
            return respond(Plan((error_frame(dying),)), self.state)
        models = self.state.models()
        known = any(m.get("name") == chat.model_name for m in models)
        if chat.image_note and known and not accepts_images(models, chat.model_name):
            self.state.count("body_rejections")
            return respond(Plan((error_frame(4001, message=NO_IMAGES),)), self.state)
        try:
            fault, text = find_chat_fault(chat.user_input)
        except ValueError as exc:
            return respond(Plan((error_frame(4001, message=str(exc)),)), self.state)
        chat = dataclasses.replace(chat, user_input=text)
        fault = self.faults.take("chat") or fault
        script = self.state.pop_script()
        plan: Plan
        if script is not None:
            plan = plan_script(script)
        else:
            minimum = self.state.min_version_code
            plan = plan_chat(
                chat,
                completion_id=_COMPLETION_ID_BASE + ordinal,
                known_model=chat.model_name in self.state.model_names(),
                too_old=minimum is not None and version_code < minimum,
                attempt=self.state.note_attempt(chat.user_input),
            )
        return respond(plan, self.state) if fault is None else chat_fault_response(fault, plan)

    def _dying(self, model_name: str) -> int | None:
        """Dialect §7: the code a ``busy`` or ``dying`` legacy chat answers, else None."""
        mode = self.state.legacy_chat
        if mode == "ok":
            return None
        current = {e.get("config_name") for p in self.state.agent_models().values() for e in p}
        return 4023 if mode == "dying" and model_name in current else 3003


class _SimApp(Starlette):
    """Starlette that keeps the server's own ``send`` in the scope (for ``[sim:reset]``)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scope[RAW_SEND_KEY] = send
        await super().__call__(scope, receive, send)


def create_upstream_app(state: SimState) -> Starlette:
    """The simulated Trae: the §2 exchange, the legacy ``/api/ide/*`` endpoints, the agent
    dialect's catalogue and chat (``trae2api.testing.agent``), ``/_sim/*``, and the §8 image
    pipeline (upload token, ImageX, TOS: ``trae2api.testing.image_service``)."""
    faults = FaultBoard()
    upstream = _Upstream(state, faults)
    routes = [
        Route(EXCHANGE_PATH, upstream.exchange, methods=["POST"]),
        Route(MODEL_LIST_PATH, upstream.model_list, methods=["GET"]),
        Route(CHAT_PATH, upstream.chat, methods=["POST"]),
        *agent_routes(state),
        *billing_routes(state),
        *admin_routes(state),
        *fault_routes(faults),
        *image_routes(state),  # last: it ends in a catch-all GET for the upload-token path
    ]
    return _SimApp(routes=routes)
