"""Helpers of the simulator suites: per-module simulator fixtures and strict request builders.

The builders follow protocol §3, §5 and the agent dialect §2 exactly, so a request the simulator
refuses is a simulator (or test) bug; tests that probe refusals start from these and break them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import orjson
import pytest

from trae2api.testing import SimulatedTrae

CHAT = "/api/ide/v1/chat"
AGENT_CHAT = "/api/agent/v3/llm_utils_chat"
VERSION_CODE = "20260820"
SESSION = "3f1c2a9e-5b7d-5e0f-9c1a-2b3c4d5e6f70"
MACHINE_ID = "a" * 64
Body = dict[str, Any]
Fixture = Callable[..., Any]


def sim_fixtures() -> tuple[Fixture, Fixture, Fixture]:
    """``shared_sim, sim, token`` for a test module: one simulator per module, reset before
    every test (``sim``), and a fresh access token of its account (``token``).

    Bind them by these names at module level; they override conftest's ``sim``.
    """

    @pytest.fixture(scope="module")
    def shared_sim() -> Iterator[SimulatedTrae]:
        with SimulatedTrae() as running:
            yield running

    @pytest.fixture
    def sim(shared_sim: SimulatedTrae) -> SimulatedTrae:
        shared_sim.state.reset()
        return shared_sim

    @pytest.fixture
    def token(sim: SimulatedTrae) -> str:
        return sim.state.mint_access_token()

    return shared_sim, sim, token


def client_fixtures() -> tuple[Fixture, Fixture]:
    """``shared_client, client``: one ``httpx.Client`` on the module's simulator, handed to each
    test after ``sim`` has reset it. Bind them by these names (they override conftest's)."""

    @pytest.fixture(scope="module")
    def shared_client(shared_sim: SimulatedTrae) -> Iterator[httpx.Client]:
        with httpx.Client(base_url=shared_sim.url, timeout=10.0) as http:
            yield http

    @pytest.fixture
    def client(sim: SimulatedTrae, shared_client: httpx.Client) -> httpx.Client:
        return shared_client

    return shared_client, client


# -- the legacy dialect (protocol §3, §5, §6) ---------------------------------------------------


def ide_headers(sim: SimulatedTrae, token: str) -> dict[str, str]:
    return {
        "x-ide-token": token,
        "x-app-id": sim.account.app_id,
        "x-ide-version": "0.1.61",
        "x-ide-version-code": VERSION_CODE,
        "x-ide-version-type": "stable",
        "x-device-id": "7311234567890123456",
        "x-machine-id": MACHINE_ID,
        "x-device-cpu": "Intel(R) Core(TM) i7-10700 CPU @ 2.90GHz",
        "x-device-brand": "Dell Inc.",
        "x-device-type": "windows",
        "Content-Type": "application/json",
        "accept": "*/*",
    }


def chat_variables(last: str, last_is_assistant: bool) -> dict[str, Any]:
    """The §5 ``variables`` object (before it is encoded into a string)."""
    return {
        "language": "",
        "locale": "en-us",
        "input": last,
        "raw_input": last,
        "version_code": int(VERSION_CODE),
        "is_inline_chat": False,
        "is_command": False,
        "problem": "",
        "current_filename": "",
        "is_select_code_before_chat": False,
        "last_select_time": 0,
        "last_turn_session": SESSION if last_is_assistant else "",
        "hash_workspace": False,
        "hash_file": 0,
        "hash_code": 0,
        "use_filepath": True,
        "current_time": "2025-05-01 10:00:00",
        "badge_clickable": True,
        "workspace_path": "/home/user/project",
        "brand": "Trae",
        "system_type": "Linux",
    }


def chat_body(messages: list[tuple[str, str]], model: str = "claude3.5") -> dict[str, Any]:
    """A legacy chat body built exactly per protocol §5 from (role, text) pairs."""
    *history, (_, last) = messages
    last_is_assistant = bool(history) and history[-1][0] == "assistant"
    variables = chat_variables(last, last_is_assistant)
    body: dict[str, Any] = {
        "user_input": last,
        "intent_name": "general_qa_intent",
        "variables": orjson.dumps(variables).decode(),
        "context_resolvers": [],
        "generate_suggested_questions": False,
        "chat_history": [
            {
                "role": role,
                "content": text,
                "status": "success",
                "locale": "en-us",
                "session_id": SESSION,
            }
            for role, text in history
        ],
        "session_id": SESSION,
        "conversation_id": SESSION,
        "current_turn": len(history),
        "valid_turns": list(range(len(history))),
        "multi_media": [],
        "model_name": model,
        "is_preset": True,
        "provider": "",
    }
    if last_is_assistant:
        body["last_llm_response_info"] = {
            "turn": len(history) - 1,
            "is_error": False,
            "response": history[-1][1],
        }
    return body


def parse_sse(text: str) -> list[tuple[str, Any]]:
    """Lenient SSE reader (protocol §6): tolerates missing spaces, ids, comments, no blank lines."""
    events: list[tuple[str, Any]] = []
    name: str | None = None
    for line in text.splitlines():
        if line.startswith("event:"):
            name = line[len("event:") :].strip()
        elif line.startswith("data:") and name is not None:
            events.append((name, orjson.loads(line[len("data:") :].strip())))
            name = None
    return events


def answer(events: list[tuple[str, Any]]) -> str:
    """The concatenated ``response`` of the ``output`` events."""
    return "".join(data["response"] for name, data in events if name == "output")


# -- the agent dialect (docs/trae-agent-dialect.md §2) ------------------------------------------


def agent_headers(sim: SimulatedTrae, token: str, request_id: str = "req-1") -> dict[str, str]:
    return {
        "authorization": f"Cloud-IDE-JWT {token}",
        "x-cloudide-token": token,
        "x-ide-token": token,
        "x-app-id": sim.account.app_id,
        "x-ide-version": "0.1.52",
        "x-ide-version-code": "20260811",
        "x-app-version-code": "20260811",
        "x-ide-version-type": "stable",
        "x-request-id": request_id,
        "x-uid": sim.account.user_id,
        "x-device-id": "7311234567890123456",
        "x-machine-id": MACHINE_ID,
        "x-device-cpu": "Intel",
        "x-device-brand": "Dell Inc.",
        "x-device-type": "windows",
        "content-type": "application/json",
        "accept": "text/event-stream",
    }


def text(value: str) -> list[dict[str, str]]:
    """An agent message's ``content``: one text part."""
    return [{"type": "text", "text": value}]


CATALOGUE = "/api/ide/v1/get_detail_param"


def catalogue_body(function: str = "chat_v3") -> Body:
    """The seven-key ``get_detail_param`` body of dialect §3."""
    return {
        "function": function,
        "config_names": None,
        "need_prompt": False,
        "current_config_info": None,
        "poly_prompt": True,
        "mode_type": None,
        "agent_type": None,
    }


def agent_chat_body(message: str, model: str | None = "kimi-k2", pool: str = "chat_v3") -> Body:
    """A valid ``llm_utils_chat`` body with one user message; ``model=None`` is inline_chat."""
    body: Body = {"function": pool, "stream": True}
    if model is None:
        body["function"] = "inline_chat"
    else:
        body["config_name"] = body["model"] = model
    body["messages"] = [{"role": "user", "content": text(message)}]
    return body
