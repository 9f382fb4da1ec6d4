"""The model catalogue: Trae's model list with the alias table applied both ways, cached.

A fresh copy is kept for ``MODELS_TTL`` seconds and a stale one is served while Trae is briefly
down (an error only when there is no copy at all). An empty table is reported as a stale
``IDE_VERSION_CODE`` (dialect §7). It must not know HTTP or the chat body.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import structlog

from trae2api.auth.account import Account
from trae2api.auth.credentials import DeviceIdentity
from trae2api.errors import ApiError, UpstreamRejected, UpstreamUnavailable
from trae2api.status.health import UpstreamHealth

# Protocol §4: client name → Trae name, as the original maps them.
DEFAULT_ALIASES: dict[str, str] = {
    "claude-3-5-sonnet": "claude3.5",
    "claude-3-5-sonnet-20240620": "claude3.5",
    "claude-3-5-sonnet-20241022": "claude3.5",
    "claude-3-7-sonnet": "aws_sdk_claude37_sonnet",
    "claude-3-7-sonnet-20250219": "aws_sdk_claude37_sonnet",
    "claude-3-7": "aws_sdk_claude37_sonnet",
    "gpt-4o-latest": "gpt-4o",
    "gpt-4.1": "gpt-4.1-2025-04-14",
    "gpt-4-1": "gpt-4.1-2025-04-14",
    "deepseek-chat": "deepseek-V3",
    "deepseek-coder": "deepseek-V3",
    "deepseek-v3": "deepseek-V3",
    "deepseek-reasoner": "deepseek-R1",
    "deepseek-r1": "deepseek-R1",
    "deepseek-chat-0324": "deepseek-V3-0324",
    "gemini-2.5-pro": "gemini-2.5-pro-preview-03-25",
    "gemini-2.5-flash": "gemini_2.5_flash",
}
# Protocol §4: the names /v1/models shows instead of Trae's for these two.
DEFAULT_PUBLIC_NAMES: dict[str, str] = {
    "claude3.5": "claude-3-5-sonnet",
    "aws_sdk_claude37_sonnet": "claude-3-7-sonnet",
}
# A fixed ``created`` so clients that sort or cache by it see the same value every time.
MODEL_CREATED = 1735689600
_OWNERS = (
    ("claude", "anthropic"),
    ("gpt", "openai"),
    ("o1", "openai"),
    ("o3", "openai"),
    ("o4", "openai"),
    ("deepseek", "deepseek"),
    ("gemini", "google"),
    ("kimi", "moonshot"),
    ("qwen", "alibaba"),
    ("doubao", "bytedance"),
    ("glm", "zhipu"),
)

log = structlog.get_logger(__name__)


class AliasTable:
    """Client names ↔ Trae names; unknown names pass through unchanged (protocol §4 CHOICE)."""

    def __init__(self, extra: Mapping[str, str] | None = None, *, legacy: bool = True) -> None:
        # The original's table names legacy models; the agent catalogue has its own names.
        self._to_trae = {**(DEFAULT_ALIASES if legacy else {}), **(extra or {})}
        self._lower = {name.lower(): trae for name, trae in self._to_trae.items()}
        self._to_public = dict(DEFAULT_PUBLIC_NAMES) if legacy else {}

    def to_trae(self, name: str) -> str:
        return self._to_trae.get(name) or self._lower.get(name.lower()) or name

    def to_public(self, trae_name: str) -> str:
        return self._to_public.get(trae_name, trae_name)


@dataclass(frozen=True)
class ModelEntry:
    public_id: str
    trae_name: str
    display_name: str
    multimodal: bool
    is_default: bool
    max_tokens: int | None = None  # output limit, where the catalogue says
    context_length: int | None = None
    pool: str | None = None  # agent dialect §7: the pool the model is sent with
    reasoning_levels: tuple[str, ...] = ()

    @property
    def owned_by(self) -> str:
        lowered = self.trae_name.lower()
        return next((owner for prefix, owner in _OWNERS if lowered.startswith(prefix)), "trae")

    def openai(self, public_id: str | None = None) -> dict[str, Any]:
        """OpenAI's model object, with Trae's facts alongside."""
        model: dict[str, Any] = {
            "id": public_id or self.public_id,
            "object": "model",
            "created": MODEL_CREATED,
            "owned_by": self.owned_by,
            "display_name": self.display_name,
            "trae_name": self.trae_name,
            "multimodal": self.multimodal,
        }
        if self.max_tokens is not None:
            model["max_tokens"] = self.max_tokens
        if self.context_length is not None:
            model["context_length"] = self.context_length
        if self.pool:
            model["pool"] = self.pool
        if self.reasoning_levels:
            model["reasoning_effort_levels"] = list(self.reasoning_levels)
        return model


class CatalogueSource(Protocol):
    """Where the catalogue comes from: the dialect in use (``selector.DialectSelector``)."""

    @property
    def aliases(self) -> AliasTable: ...

    @property
    def generation(self) -> int:
        """Changes whenever the dialect in use does (its model names are not the old ones)."""
        ...

    async def catalogue(
        self, access_token: str, device: DeviceIdentity
    ) -> list[dict[str, Any]]: ...


def empty_table_message(version_code: str) -> str:
    """Dialect §7: what an empty model table means, and the fix."""
    return (
        f"Trae returned an empty model table for IDE_VERSION_CODE={version_code}; "
        f"raise IDE_VERSION_CODE (and IDE_VERSION)"
    )


class ModelCatalog:
    """Caches the account's model list; concurrent misses share one upstream call."""

    def __init__(
        self,
        source: CatalogueSource,
        account: Account,
        health: UpstreamHealth,
        *,
        ttl: float,
        version_code: str,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._source = source
        self._account = account
        self._health = health
        self._ttl = ttl
        self._version_code = version_code
        self._clock = clock
        self._entries: list[ModelEntry] | None = None
        self._fetched_at = 0.0
        self._generation = source.generation
        self._lock = asyncio.Lock()
        # Dialect §7: set while the last answer was an empty table.
        self.problem: str | None = None

    @property
    def aliases(self) -> AliasTable:
        return self._source.aliases

    async def refresh(self) -> list[ModelEntry]:
        """Ask Trae now (readiness), bypassing the cache; errors are raised, not hidden."""
        async with self._lock:
            return self._store(await fetch_model_configs(self._source, self._account, self._health))

    async def entries(self) -> list[ModelEntry]:
        if self._fresh():
            assert self._entries is not None
            return self._entries
        async with self._lock:
            if self._fresh():
                assert self._entries is not None
                return self._entries
            try:
                configs = await fetch_model_configs(self._source, self._account, self._health)
            except ApiError as exc:
                if self._entries is None:
                    raise
                log.warning("model_list_stale", reason=exc.message, age=self._age())
                return self._entries
            return self._store(configs)

    def _store(self, configs: list[dict[str, Any]]) -> list[ModelEntry]:
        self._entries = [self._entry(config) for config in configs]
        self._fetched_at = self._clock()
        self._generation = self._source.generation
        problem = None if self._entries else empty_table_message(self._version_code)
        if problem and problem != self.problem:
            log.error(
                "upstream.model_table_empty", ide_version_code=self._version_code, fix=problem
            )
        elif self.problem and not problem:
            log.info("upstream.model_table_back", models=len(self._entries))
        self.problem = problem
        return self._entries

    async def find(self, model_id: str) -> ModelEntry | None:
        """The entry a client's model name refers to (an alias, a public or a Trae name)."""
        # Agent dialect §3: a "__suffix" a client sends is not part of the id.
        trae_name = self.aliases.to_trae(model_id).split("__", 1)[0]
        for entry in await self.entries():
            if entry.trae_name in (trae_name, model_id) or entry.public_id == model_id:
                return entry
        return None

    async def accepts_images(self, model_id: str) -> bool | None:
        """Whether the catalogue marks the model multimodal; None when it cannot tell."""
        try:
            entry = await self.find(model_id)
        except ApiError:
            return None
        return entry.multimodal if entry is not None else None

    def _fresh(self) -> bool:
        # A list from another dialect is stale whatever its age.
        return (
            self._entries is not None
            and self._generation == self._source.generation
            and self._age() < self._ttl
        )

    def _age(self) -> float:
        return self._clock() - self._fetched_at

    def _entry(self, config: dict[str, Any]) -> ModelEntry:
        name = str(config["name"])
        return ModelEntry(
            public_id=self.aliases.to_public(name),
            trae_name=name,
            display_name=str(config.get("display_name") or name),
            multimodal=bool(config.get("multimodal")),
            is_default=bool(config.get("is_default")),
            max_tokens=config.get("max_tokens"),
            context_length=config.get("context_length"),
            pool=config.get("pool"),
            reasoning_levels=tuple(config.get("effort_levels") or ()),
        )


async def fetch_model_configs(
    dialect: CatalogueSource, account: Account, health: UpstreamHealth
) -> list[dict[str, Any]]:
    """The account's catalogue from the dialect, refreshing the access token once on 1001."""
    token = await account.access_token()
    try:
        configs = await dialect.catalogue(token, account.device)
    except UpstreamRejected as exc:
        if exc.upstream_code != 1001:
            raise
        token = await account.refresh_after_rejection(token)
        configs = await dialect.catalogue(token, account.device)
    except UpstreamUnavailable as exc:
        health.failure(exc.message)
        raise
    health.success()
    return configs
