"""The simulated Trae upstream's agent dialect (``docs/trae-agent-dialect.md`` §2–§6), strictly.

It serves two endpoints on the same app, account and tokens as the legacy dialect; it must not be
lenient. With ``agent_endpoints`` false both are HTML 404 pages, before any check (a host that
only speaks legacy).

``POST /api/ide/v1/get_detail_param`` (catalogue): auth and headers as below, a body with exactly
the seven §3 keys (``config_names: null, need_prompt: false, current_config_info: null, poly_prompt:
true, mode_type: null, agent_type: null`` and a string ``function``). Answers ``{"config_info_list":
[...]}`` for the pool (``SimState`` ``agent_models``; default pools ``chat_v3``, ``solo_work_lite``
and ``solo_work_remote``: ``agent_tables``). Dialect §7: only an ``x-ide-version-code`` that is an
8-digit date not before ``table_code_floor`` (20260801) selects that table; any other code, or none,
selects the empty one (``config_info_list: []``, and every chat is in-stream 4001 "param is
invalid", checked right after ``x-app-id``). Choices: a shape problem is HTTP 400 ``{"code": 4001,
"message", "field"}``; an unknown pool is HTTP 200 ``{"code": 2001, "message": "function X not
found"}`` (no ``config_info_list``); a missing or foreign ``x-app-id`` is HTTP 400 ``{"code": 4001,
"message": "expr_path=app_id", "header": "x-app-id"}``; ``model_list_fail`` → HTML 503.

``POST /api/agent/v3/llm_utils_chat`` (chat). Checks, in this order: ``fail_next_chats`` (HTML
error); the token triple (``Authorization: Cloud-IDE-JWT <t>``, ``X-Cloudide-Token``,
``X-Ide-Token``, one valid unexpired token) else HTTP 401 ``{"code": 1001, "message": "not
authenticated"}``; the other headers (``x-ide-version``, numeric ``x-ide-version-code`` when sent,
``X-Request-ID``, the legacy device headers ``x-device-id/-machine-id/-cpu/-brand/-type``,
``X-App-Version-Code`` = the version code and ``x-uid`` = the user id when sent, JSON Content-Type)
else HTTP 400 naming the header; then, in-stream (HTTP 200, one ``error`` event): ``x-app-id``
missing or neither the account's nor the product app id → 4001 "expr_path=app_id"; the version gate
(4001 "param is invalid"); the body (``agent_validation.check_agent_chat``: 2001 function, 4023
forbidden keys or unknown model, 4001 shape or model of another pool or ``max_tokens`` above the
model's output limit or ``reasoning_effort_level`` not among the model's declared levels, 4027
tool-call pairing, 4006 when the prompt's characters / 4 exceed the model's context window); image
parts (``images_seen.agent_image_note``: 4001 "model does not accept images" when the model's entry
is not multimodal, 4001 for a data URL that is not a readable base64 image of its media type or a
URL neither data: nor http(s)); then a scripted answer if one is queued; then ``[sim:http]``,
``[sim:reset]``, ``[sim:empty]``; stale version (below ``min_version_code``) → 4120; unknown
directives → 4001; ``[sim:call]`` without ``tools`` → 4001; then the reply.

The stream uses the agent framing: ``event:x`` / ``data:{...}`` lines, no space, no blank lines:
``metadata`` {prompt_completion_id}, ``timing_cost`` {provider_model_name: the served model, e.g.
``glm-5.2-0915``}, queue events, ``progress_notice`` (a JSON string), ``output`` ×N {response,
reasoning_content, tool_calls}, ``extra_info`` {request_id}, ``token_usage`` {prompt, completion,
total, reasoning, cache_read_input tokens}, ``notify_usage`` {"billing_mode": "credits",
"cn_credits_remain_info": {"ide_credits": N, "work_credits": M}} (N after this chat's charge:
``credits_per_chat`` of ``CreditBook``; a chat arriving with N = 0 is in-stream 4008 instead,
checked after a scripted answer and before the directives), ``done`` {"finish_reason": "stop"}
(always stop, also after tool calls). Reasoning models stream reasoning_content first ("Let me think
about <text>.", or "... <text> with <level> effort." when ``reasoning_effort_level`` came). The
answer: trailing ``tool`` messages → "Tool results: NAME → content" (joined by "; "); else the
``[sim:call]`` calls; else ``tool_choice`` ``required`` (first tool, ``{}``) or a tool name (that
tool, ``{}``); else "Hello! You said: <text> (turn N)", followed by `` [saw N image(s): <w>x<h>
<format> sha256:<12 hex>; ...]`` (``remote <url>`` for http(s) URLs) when the last user message has
image parts.

Directives in the last ``user`` message: ``[sim:queue N]``, ``[sim:wait S]``, ``[sim:slow MS]``,
``[sim:long N]``, ``[sim:error CODE]``, ``[sim:midstream-error CODE]``, ``[sim:nodone]``,
``[sim:nousage]``, ``[sim:done-empty]``, ``[sim:finish X]``, ``[sim:msg-variant]``,
``[sim:transient CODE K]``, ``[sim:cumulative]``, ``[sim:pieces a|b|c]``,
``[sim:http STATUS]``, ``[sim:reset]`` as in the legacy dialect, plus:

    [sim:empty]              HTTP 200 text/event-stream with no events at all
    [sim:call NAME {json}]   call tool NAME with these arguments (several: parallel calls)
    [sim:interleave]         fragments of parallel calls interleave (call 0, call 1, call 0 ...)
    [sim:fragment-variant]   "function" instead of "function_call", tool_calls a single object
    [sim:solo-extras]        fragments (and their function objects) carry "namespace" and
                             "partial_arguments" keys
    [sim:text-then-call]     "Let me use a tool for that." streams before the calls
    [sim:cumulative-args]    each call fragment's arguments are the call's arguments so far,
                             and the last fragment is repeated (as a continuation)

With ``[sim:cumulative]`` the text fields are snapshots while tool-call ``arguments`` stay
fragments unless ``[sim:cumulative-args]`` is given too (the record shows cumulative ``response``
only; SOLO's ``partial_arguments`` is a cumulative copy of the arguments).

Each call's arguments (``json.dumps`` text) stream as ≥ 3 fragments: the first carries ``index``,
``id`` (``call_<chat ordinal>_<index>``), ``type: "function"`` and ``function_call: {name,
arguments}``; the others ``index``, ``id: ""`` and ``function_call: {name: "", arguments}``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from functools import partial

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from trae2api.testing.admin import json_response, read_json
from trae2api.testing.agent_catalog import table_selected
from trae2api.testing.agent_scenario import (
    charges,
    last_user_text,
    plan_agent_chat,
    with_credits,
)
from trae2api.testing.agent_validation import (
    PARAM_INVALID,
    AgentRejected,
    app_id_accepted,
    check_agent_chat,
    check_agent_headers,
    check_catalogue_body,
    presented_token,
)
from trae2api.testing.authentication import authenticate, invalid_response
from trae2api.testing.images_seen import agent_image_note
from trae2api.testing.plan_sender import html_error, respond
from trae2api.testing.scenario import Frame, Plan, error_frame, plan_script
from trae2api.testing.state import SimState
from trae2api.testing.validation import Invalid

CATALOGUE_PATH = "/api/ide/v1/get_detail_param"
AGENT_CHAT_PATH = "/api/agent/v3/llm_utils_chat"
APP_ID_MESSAGE = "expr_path=app_id"


def _error_stream(frame: Frame) -> Plan:
    return Plan((frame,), agent=True)


class _AgentUpstream:
    def __init__(self, state: SimState) -> None:
        self.state = state

    def _authenticate(self, headers: Mapping[str, str]) -> Response | None:
        """None when the token triple and the other §2 headers are acceptable."""
        check = partial(check_agent_headers, user_id=self.state.user_id)
        owner = authenticate(self.state, headers, presented_token(headers), check)
        if isinstance(owner, Response):
            return owner
        self.state.note_request_id(headers["x-request-id"])
        return None

    async def catalogue(self, request: Request) -> Response:
        """``get_detail_param``: the pool's ``config_info_list``."""
        if not self.state.agent_endpoints:
            return html_error(404)
        if self.state.model_list_fail:
            return html_error(503)
        denied = self._authenticate(request.headers)
        if denied is not None:
            return denied
        if not app_id_accepted(request.headers, self.state.app_id):
            self.state.count("header_rejections")
            body = {"code": 4001, "message": APP_ID_MESSAGE, "header": "x-app-id"}
            return json_response(body, 400)
        catalogue = self.state.agent_models()
        data, ok = await read_json(request)
        try:
            pool = check_catalogue_body(data if ok else None, catalogue)
        except Invalid as exc:
            self.state.count("body_rejections")
            return invalid_response(exc, "field")
        except AgentRejected as exc:
            self.state.count("body_rejections")
            return json_response({"code": exc.code, "message": exc.message})
        self.state.count("model_lists")
        if not self._table_selected(request.headers):
            return json_response({"config_info_list": []})
        return json_response({"config_info_list": catalogue[pool]})

    def _table_selected(self, headers: Mapping[str, str]) -> bool:
        """Whether the version code selects the model table (dialect §7), else the empty one."""
        return table_selected(headers.get("x-ide-version-code"), self.state.table_code_floor)

    async def chat(self, request: Request) -> Response:
        """``llm_utils_chat``: validate, then stream the planned answer."""
        if not self.state.agent_endpoints:
            return html_error(404)
        data, ok = await read_json(request)
        ordinal = self.state.record_chat(dict(request.headers), data, agent=True)
        failure = self.state.take_chat_failure()
        if failure is not None:
            return html_error(failure)
        denied = self._authenticate(request.headers)
        if denied is not None:
            return denied
        return respond(self._plan(request.headers, data if ok else None, ordinal), self.state)

    def _plan(self, headers: Mapping[str, str], data: object, ordinal: int) -> Plan:
        if not app_id_accepted(headers, self.state.app_id):
            self.state.count("header_rejections")
            return _error_stream(error_frame(4001, message=APP_ID_MESSAGE))
        if not self._table_selected(headers):
            self.state.count("body_rejections")
            return _error_stream(error_frame(4001, message=PARAM_INVALID))
        try:
            chat = check_agent_chat(data, self.state.agent_models())
            note = agent_image_note(data, multimodal=chat.model.multimodal)
            chat = dataclasses.replace(chat, image_note=note)
        except AgentRejected as exc:
            self.state.count("body_rejections")
            return _error_stream(error_frame(exc.code, message=exc.message))
        script = self.state.pop_script()
        if script is not None:
            return dataclasses.replace(plan_script(script), agent=True)
        minimum = self.state.min_version_code
        too_old = minimum is not None and int(headers.get("x-ide-version-code", "0")) < minimum
        request_id = headers["x-request-id"]
        if self.state.credits.exhausted():  # dialect §7: 4008 once ide_credits ran out
            return _error_stream(error_frame(4008))
        attempt = self.state.note_attempt(last_user_text(chat))
        plan = plan_agent_chat(
            chat, ordinal=ordinal, request_id=request_id, too_old=too_old, attempt=attempt
        )
        return with_credits(plan, self.state.credits.spend()) if charges(plan) else plan


def agent_routes(state: SimState) -> list[Route]:
    """The agent dialect's catalogue and chat routes."""
    agent = _AgentUpstream(state)
    return [
        Route(CATALOGUE_PATH, agent.catalogue, methods=["POST"]),
        Route(AGENT_CHAT_PATH, agent.chat, methods=["POST"]),
    ]
