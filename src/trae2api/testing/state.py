"""The simulated Trae account: switches, catalogues, counters and the last chat, behind one lock.

Its tokens (protocol §2) are ``testing.tokens``, kept under the same lock. It must not do I/O or
know about HTTP; tests on another thread read and steer it through its methods.
"""

from __future__ import annotations

import copy
import secrets
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from typing import Any

import orjson

from trae2api.testing.agent_catalog import TABLE_CODE_FLOOR
from trae2api.testing.agent_tables import default_agent_models
from trae2api.testing.credit_ledger import CREDIT_CONFIG_KEYS, CreditBook
from trae2api.testing.image_store import IMAGE_CONFIG_KEYS, ImageStore
from trae2api.testing.tokens import (
    DEFAULT_ACCESS_TTL,
    DEFAULT_APP_ID,
    DEFAULT_CLIENT_ID,
    DEFAULT_REFRESH_TTL,
    DEFAULT_USER_ID,
    ExchangeRejected,
    ExchangeResult,
    SimAccount,
    TokenBook,
)

_COUNTERS = (
    "exchanges_ok",
    "exchanges_rejected",
    "model_lists",
    "chats",
    "agent_chats",
    "request_id_reuses",
    "chats_failed_on_purpose",
    "active_streams",
    "cancelled_streams",
    "completed_streams",
    "auth_rejections",
    "header_rejections",
    "body_rejections",
    "device_changes",
    "balance_checks",
)
_CONFIG_KEYS = frozenset(
    {
        "access_ttl",
        "refresh_ttl",
        "exchange_delay",
        "min_version_code",
        "model_list_fail",
        "fail_next_chats",
        "fail_status",
        "models",
        "agent_models",
        "table_code_floor",
        "agent_endpoints",
        "legacy_endpoints",
        "exchange_endpoint",
        "legacy_chat",
    }
)
_REQUEST_IDS_KEPT = 4096
_ENDPOINT_SWITCHES = frozenset({"agent_endpoints", "legacy_endpoints", "exchange_endpoint"})
LEGACY_CHAT_MODES = ("ok", "busy", "dying")  # dialect §7: the legacy endpoint is dying


def _model(name: str, display: str, *, multimodal: bool = False, default: bool = False) -> Any:
    config = orjson.dumps({"max_tokens": 8192, "tier": "sim", "name": name}).decode()
    return {
        "name": name,
        "display_name": display,
        "multimodal": multimodal,
        "is_default": default,
        "custom_config": config,
    }


def default_models() -> list[dict[str, Any]]:
    """The default catalogue of protocol §4 (exactly one entry is the default)."""
    return [
        _model("gpt-4o", "GPT-4o", multimodal=True),
        _model("gpt-4.1-2025-04-14", "GPT-4.1"),
        _model("claude3.5", "Claude-3.5-Sonnet", multimodal=True, default=True),
        _model("aws_sdk_claude37_sonnet", "Claude-3.7-Sonnet", multimodal=True),
        _model("deepseek-V3", "DeepSeek-V3"),
        _model("deepseek-R1", "DeepSeek-R1"),
        _model("gemini-2.5-pro-preview-03-25", "Gemini-2.5-Pro", multimodal=True),
    ]


class SimState:
    """The whole mutable state of the simulated upstream; every method is thread-safe."""

    def __init__(
        self,
        *,
        client_id: str = DEFAULT_CLIENT_ID,
        extra_client_ids: Iterable[str] = (),
        app_id: str = DEFAULT_APP_ID,
        user_id: str = DEFAULT_USER_ID,
        refresh_token: str | None = None,
        access_ttl: float = DEFAULT_ACCESS_TTL,
        refresh_ttl: float = DEFAULT_REFRESH_TTL,
        clock: Callable[[], float] = time.time,
        models: list[dict[str, Any]] | None = None,
        ide_credits: int | None = None,
        agent_endpoints: bool = True,
        legacy_chat: str = "ok",
        table_code_floor: int = TABLE_CODE_FLOOR,
    ) -> None:
        """The account and its initial switches; ``reset()`` returns to these (the keyword
        switches are those of ``configure``, ``ide_credits`` the initial balance)."""
        self._lock = threading.Lock()
        self._clock = clock
        self.app_id = app_id
        self.user_id = user_id
        self.client_ids = frozenset({client_id, *extra_client_ids})
        initial = refresh_token or secrets.token_urlsafe(32)
        self.account = SimAccount(app_id, client_id, user_id, initial)
        self._initial = (access_ttl, refresh_ttl, copy.deepcopy(models))
        self._modes = (_boolean("agent_endpoints", agent_endpoints), _legacy_mode(legacy_chat))
        self._floor = int(table_code_floor)
        self._counters = dict.fromkeys(_COUNTERS, 0)
        self.images = ImageStore(clock)
        self.credits = CreditBook()
        self.credits.reset(ide_credits)
        self._restore()

    def _restore(self) -> None:
        access_ttl, refresh_ttl, models = self._initial
        self.access_ttl = access_ttl
        self.refresh_ttl = refresh_ttl
        self.exchange_delay = 0.0
        self.min_version_code: int | None = None
        self.table_code_floor = self._floor
        self.agent_endpoints, self.legacy_chat = self._modes
        self.legacy_endpoints = self.exchange_endpoint = True
        self.model_list_fail = False
        self._models = copy.deepcopy(models) if models is not None else default_models()
        self._agent_models = default_agent_models()
        self._request_ids: deque[str] = deque(maxlen=_REQUEST_IDS_KEPT)
        self._tokens = TokenBook(self.account, self.client_ids, self._clock, refresh_ttl)
        self._devices: dict[str, tuple[str, str]] = {}
        active = self._counters["active_streams"]
        self._counters = dict.fromkeys(_COUNTERS, 0)
        self._counters["active_streams"] = active
        self._fail_next_chats = 0
        self._fail_status = 503
        self._scripts: deque[list[dict[str, Any]]] = deque()
        self._last_chat: dict[str, Any] | None = None
        self._last_agent_chat: dict[str, Any] | None = None
        self._attempts: OrderedDict[str, int] = OrderedDict()
        self.images.reset()
        self.credits.reset()

    def reset(self) -> None:
        """Back to the state at construction: the initial refresh token works again, every
        access token, switch, script and counter (but ``active_streams``) is forgotten."""
        with self._lock:
            self._restore()

    # -- configuration -------------------------------------------------------------------------

    def configure(self, **changes: Any) -> None:
        """Change switches: access_ttl, refresh_ttl, exchange_delay, min_version_code,
        table_code_floor (the lowest ``x-ide-version-code`` that selects the agent model table),
        agent_endpoints (false: the agent catalogue and chat are HTML 404s, a legacy-only host),
        legacy_endpoints (false: the legacy model list and chat are 404s), exchange_endpoint
        (false: the token exchange is a 404),
        legacy_chat (``ok``; ``busy``: every legacy chat is 3003; ``dying``: 4023 for names of
        the agent table, 3003 for the rest),
        model_list_fail, fail_next_chats, fail_status, models, agent_models (``{pool: [entry]}``,
        the first pool is the account's own), the image switches of ``ImageStore`` and the credit
        switches of ``CreditBook`` (ide_credits, work_credits, credits_per_chat).
        Unknown keys raise ValueError."""
        unknown = set(changes) - _CONFIG_KEYS - IMAGE_CONFIG_KEYS - CREDIT_CONFIG_KEYS
        if unknown:
            raise ValueError(f"unknown configuration keys: {sorted(unknown)}")
        self.images.configure({k: changes.pop(k) for k in set(changes) & IMAGE_CONFIG_KEYS})
        self.credits.configure({k: changes.pop(k) for k in set(changes) & CREDIT_CONFIG_KEYS})
        with self._lock:
            for key, value in changes.items():
                if key == "fail_next_chats":
                    self._fail_next_chats = int(value)
                elif key == "fail_status":
                    self._fail_status = int(value)
                elif key == "models":
                    self._models = copy.deepcopy(list(value))
                elif key == "agent_models":
                    self._agent_models = _agent_catalogue(value)
                elif key in _ENDPOINT_SWITCHES:
                    setattr(self, key, _boolean(key, value))
                elif key == "legacy_chat":
                    self.legacy_chat = _legacy_mode(value)
                elif key == "table_code_floor":
                    self.table_code_floor = int(value)
                elif key == "min_version_code":
                    self.min_version_code = None if value is None else int(value)
                elif key == "model_list_fail":
                    self.model_list_fail = bool(value)
                else:
                    setattr(self, key, float(value))

    def models(self) -> list[dict[str, Any]]:
        """A copy of the model catalogue."""
        with self._lock:
            return copy.deepcopy(self._models)

    def agent_models(self) -> dict[str, list[dict[str, Any]]]:
        """A copy of the agent dialect's catalogue, pool by pool."""
        with self._lock:
            return copy.deepcopy(self._agent_models)

    def model_names(self) -> frozenset[str]:
        with self._lock:
            return frozenset(str(m.get("name")) for m in self._models)

    # -- tokens --------------------------------------------------------------------------------

    @property
    def current_refresh_token(self) -> str:
        """The newest refresh token issued (the only one that still works, unless it expired)."""
        with self._lock:
            return self._tokens.current_refresh

    def exchange(self, client_id: str, refresh_token: str, user_id: str) -> ExchangeResult:
        """Burn ``refresh_token`` and mint a new pair, or raise ``ExchangeRejected``."""
        with self._lock:
            try:
                result = self._tokens.exchange(
                    client_id,
                    refresh_token,
                    user_id,
                    access_ttl=self.access_ttl,
                    refresh_ttl=self.refresh_ttl,
                )
            except ExchangeRejected:
                self._counters["exchanges_rejected"] += 1
                raise
            self._counters["exchanges_ok"] += 1
            return result

    def mint_access_token(self) -> str:
        """A valid access token without an exchange (for tests of the chat side alone)."""
        with self._lock:
            return self._tokens.mint(self.access_ttl)

    def access_token_owner(self, token: str) -> str | None:
        """The user id of a currently valid access token, else None."""
        with self._lock:
            return self._tokens.owner(token)

    def expire_access_tokens(self) -> None:
        """Every access token issued so far stops working now."""
        with self._lock:
            self._tokens.expire_access_tokens()

    # -- counters and bookkeeping --------------------------------------------------------------

    def count(self, name: str, amount: int = 1) -> None:
        with self._lock:
            self._counters[name] += amount

    def note_device(self, user_id: str, device_id: str, machine_id: str) -> None:
        """Remember the account's device; a different one later counts as a device change."""
        with self._lock:
            previous = self._devices.get(user_id)
            if previous is not None and previous != (device_id, machine_id):
                self._counters["device_changes"] += 1
            self._devices[user_id] = (device_id, machine_id)

    def stream_started(self) -> None:
        self.count("active_streams")

    def stream_finished(self, completed: bool) -> None:
        with self._lock:
            self._counters["active_streams"] -= 1
            self._counters["completed_streams" if completed else "cancelled_streams"] += 1

    def record_chat(self, headers: dict[str, str], body: Any, *, agent: bool = False) -> int:
        """Keep the chat request for inspection and count it; returns its ordinal (from 1)."""
        with self._lock:
            self._counters["chats"] += 1
            dialect = "agent" if agent else "legacy"
            self._last_chat = {"headers": dict(headers), "body": copy.deepcopy(body)}
            self._last_chat["dialect"] = dialect
            if agent:
                self._counters["agent_chats"] += 1
                self._last_agent_chat = copy.deepcopy(self._last_chat)
            return self._counters["chats"]

    def last_chat(self) -> dict[str, Any] | None:
        """``{"headers": {...}, "body": <parsed JSON or raw text>, "dialect": "legacy"|"agent"}``
        of the last chat of either dialect, if any."""
        with self._lock:
            return copy.deepcopy(self._last_chat)

    def last_agent_chat(self) -> dict[str, Any] | None:
        """Like ``last_chat``, but the last ``llm_utils_chat`` request only."""
        with self._lock:
            return copy.deepcopy(self._last_agent_chat)

    def note_request_id(self, request_id: str) -> None:
        """Remember an ``X-Request-ID``; seeing one again counts a ``request_id_reuses``."""
        with self._lock:
            if request_id in self._request_ids:
                self._counters["request_id_reuses"] += 1
            self._request_ids.append(request_id)

    def note_attempt(self, last_user_text: str) -> int:
        """How many chats (this one included) came with this last user text: the attempt
        number ``[sim:transient]`` counts (the newest 4096 texts are remembered)."""
        with self._lock:
            count = self._attempts.pop(last_user_text, 0) + 1
            self._attempts[last_user_text] = count
            while len(self._attempts) > _REQUEST_IDS_KEPT:
                self._attempts.popitem(last=False)
            return count

    def take_chat_failure(self) -> int | None:
        """The HTTP status this chat must fail with (consuming one of ``fail_next_chats``)."""
        with self._lock:
            if self._fail_next_chats <= 0:
                return None
            self._fail_next_chats -= 1
            self._counters["chats_failed_on_purpose"] += 1
            return self._fail_status

    def push_script(self, events: list[dict[str, Any]]) -> None:
        """Queue a verbatim event list to answer the next valid chat with."""
        with self._lock:
            self._scripts.append(copy.deepcopy(events))

    def pop_script(self) -> list[dict[str, Any]] | None:
        with self._lock:
            return self._scripts.popleft() if self._scripts else None

    def reset_counters(self) -> None:
        """Zero every counter except ``active_streams`` (streams still open stay counted)."""
        with self._lock:
            active = self._counters["active_streams"]
            self._counters = dict.fromkeys(_COUNTERS, 0)
            self._counters["active_streams"] = active
        self.images.reset_counters()

    def stats(self) -> dict[str, Any]:
        """Counters plus the token and switch state, as one JSON-able dict."""
        with self._lock:
            return {
                **self._counters,
                "current_refresh_token": self._tokens.current_refresh,
                "valid_access_tokens": self._tokens.valid_access_tokens(),
                "pending_scripts": len(self._scripts),
                "fail_next_chats": self._fail_next_chats,
                "fail_status": self._fail_status,
                "access_ttl": self.access_ttl,
                "refresh_ttl": self.refresh_ttl,
                "exchange_delay": self.exchange_delay,
                "min_version_code": self.min_version_code,
                "table_code_floor": self.table_code_floor,
                "agent_endpoints": self.agent_endpoints,
                "legacy_endpoints": self.legacy_endpoints,
                "exchange_endpoint": self.exchange_endpoint,
                "legacy_chat": self.legacy_chat,
                "model_list_fail": self.model_list_fail,
                **self.images.stats(),
                **self.credits.stats(),
            }


def _agent_catalogue(value: Any) -> dict[str, list[dict[str, Any]]]:
    """Check an ``agent_models`` value: a non-empty ``{pool: [entry, ...]}``."""
    if not isinstance(value, dict) or not value:
        raise ValueError("agent_models must be a non-empty object {pool: [entries]}")
    for pool, entries in value.items():
        if not isinstance(entries, list) or not entries:
            raise ValueError(f"agent_models[{pool!r}] must be a non-empty list")
        if not all(isinstance(e, dict) and isinstance(e.get("config_name"), str) for e in entries):
            raise ValueError(f"agent_models[{pool!r}] entries need a string config_name")
    return copy.deepcopy(value)


def _boolean(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{key} must be true or false")
    return value


def _legacy_mode(value: Any) -> str:
    if value not in LEGACY_CHAT_MODES:
        raise ValueError(f"legacy_chat must be one of {', '.join(LEGACY_CHAT_MODES)}")
    return str(value)
