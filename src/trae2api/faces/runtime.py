"""What handlers may use, handed to them typed by FastAPI dependencies (no ``app.state`` lookups).

``create_app`` keeps one ``Runtime`` on the application; ``current_runtime`` and ``services`` are
the only readers of it. Handlers declare ``RuntimeDep``/``ServicesDep`` parameters, and
``authenticate`` (client key, then rate limit) as a dependency; the chat handlers take all three
at once as ``CallerDep``.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Annotated, Any, cast

import httpx
import structlog
from fastapi import Depends, Request

from trae2api.auth.manager import CredentialManager
from trae2api.auth.store import CredentialStore
from trae2api.chat.attachments import Attachments
from trae2api.chat.catalogue import ModelCatalog
from trae2api.chat.selector import DialectSelector
from trae2api.chat.service import ChatService
from trae2api.config import Settings
from trae2api.errors import ApiError, ShuttingDown
from trae2api.faces.ratelimit import RateLimiter
from trae2api.faces.responses_store import MemoryResponseStore, ResponseStore
from trae2api.faces.security import CLIENT_SCOPE_KEY, ClientKeys, identify
from trae2api.process.shutdown import Drain
from trae2api.status.credits import Credits
from trae2api.status.health import UpstreamHealth
from trae2api.status.metrics import Metrics
from trae2api.upstream.balance import BalanceClient
from trae2api.upstream.streams import StreamPool


@dataclass
class Deps:
    """The services a request handler may use; built once per process, when it starts."""

    http: httpx.AsyncClient
    streams: StreamPool
    store: CredentialStore
    account: CredentialManager
    dialect: DialectSelector
    catalog: ModelCatalog
    chat: ChatService
    health: UpstreamHealth
    attachments: Attachments
    background: list[asyncio.Task[Any]] = field(default_factory=list)
    # GATE-B (issue 10): the credits last reported, and the account host's balance query.
    credits: Credits | None = None
    balance: BalanceClient | None = None
    # Responses kept for previous_response_id (issue 12); app.py puts them in Redis with REDIS_URL.
    responses: ResponseStore = field(default_factory=MemoryResponseStore)

    async def probe(self) -> None:
        """Ask Trae for the model list now (readiness), bypassing the catalogue's cache."""
        await self.catalog.refresh()


@dataclass
class Runtime:
    """One application's settings, client keys, metrics, drain, limiter and (once started) deps."""

    settings: Settings
    client_keys: ClientKeys
    metrics: Metrics
    drain: Drain
    rate_limiter: RateLimiter | None
    deps: Deps | None = None


# The dependencies are ``async def`` although they do no I/O: FastAPI runs a plain ``def``
# dependency in its thread pool, a thread hop per request (measured: +0.3 ms of CPU each).


def runtime_of(request: Request) -> Runtime:
    """The application's ``Runtime`` (for code that is not a dependency)."""
    return cast(Runtime, request.app.state.runtime)


async def current_runtime(request: Request) -> Runtime:
    """FastAPI dependency: the application's ``Runtime``."""
    return runtime_of(request)


async def services(request: Request) -> Deps:
    """FastAPI dependency: the started services (the lifespan builds them before serving)."""
    deps = runtime_of(request).deps
    if deps is None:  # only while starting or after stopping
        raise ShuttingDown("the gateway is not serving yet")
    return deps


async def authenticate(request: Request) -> str:
    """FastAPI dependency: the client's key name, or 401 in OpenAI's envelope; then its limit."""
    runtime = runtime_of(request)
    name = identify(runtime.client_keys, request)
    request.scope[CLIENT_SCOPE_KEY] = name
    structlog.contextvars.bind_contextvars(client=name)
    if runtime.rate_limiter is not None:
        try:
            await runtime.rate_limiter.check(name)
        except ApiError:
            runtime.metrics.rate_limited.labels(name).inc()
            raise
    return name


@dataclass(slots=True)
class Caller:
    """What a chat handler needs in one dependency: the client's key name and what it may use.

    One dependency instead of three: FastAPI solves each one per request (measured: about
    5 µs of CPU each, on the path every chat takes).
    """

    client_name: str
    runtime: Runtime
    deps: Deps


async def caller(request: Request) -> Caller:
    """FastAPI dependency: ``authenticate``, then the started services."""
    name = await authenticate(request)
    return Caller(name, runtime_of(request), await services(request))


RuntimeDep = Annotated[Runtime, Depends(current_runtime)]
ServicesDep = Annotated[Deps, Depends(services)]
CallerDep = Annotated[Caller, Depends(caller)]
