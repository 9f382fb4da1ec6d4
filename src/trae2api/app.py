"""Assembly: ``create_app(settings, deps=None)`` wires the parts and owns their lifetime.

Nothing here decides behaviour; it builds the objects, mounts the routes and middleware, and
starts/stops the background credential refresh.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import structlog
from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware

from trae2api import __version__
from trae2api.auth.manager import CredentialManager
from trae2api.auth.rotation import DetachedRotator, RotationSetup
from trae2api.auth.sqlite_store import SqliteStore
from trae2api.auth.store import CredentialStore
from trae2api.chat.attachments import Attachments
from trae2api.chat.catalogue import AliasTable, ModelCatalog
from trae2api.chat.dialect import AgentDialect, LegacyDialect
from trae2api.chat.selector import DialectSelector
from trae2api.chat.service import ChatService, ChatTuning
from trae2api.config import AGENT_APP_ID, Settings
from trae2api.errors import ApiError, ConfigError
from trae2api.faces import anthropic_messages as anthropic_routes
from trae2api.faces import error_handlers as error_handlers
from trae2api.faces import openai_chat as chat_routes
from trae2api.faces import openai_models as model_routes
from trae2api.faces import probes as health_routes
from trae2api.faces import prometheus as metrics_routes
from trae2api.faces import responses_api as responses_routes
from trae2api.faces.keys import client_key_pairs, warn_short_keys
from trae2api.faces.middleware import BodyLimit, RequestContext
from trae2api.faces.ratelimit import build_rate_limiter
from trae2api.faces.responses_store import RedisResponseStore
from trae2api.faces.runtime import Deps, Runtime
from trae2api.faces.security import ClientKeys
from trae2api.log import secrets_registry
from trae2api.process.shutdown import Drain
from trae2api.status.credits import Credits, poll_balance
from trae2api.status.health import UpstreamHealth
from trae2api.status.metrics import MeteredRotator, Metrics
from trae2api.upstream.agent_client import AgentClient
from trae2api.upstream.balance import BalanceClient, balance_hosts
from trae2api.upstream.client import TraeClient, UpstreamIdentity
from trae2api.upstream.imagefetch import ImageFetcher
from trae2api.upstream.imagex import ImageUploader
from trae2api.upstream.streams import StreamPool, StreamTimeouts
from trae2api.upstream.transport import upstream_http_client
from trae2api.upstream.upload_cache import RedisUploadCache, SqliteUploadCache, UploadCache
from trae2api.wire.sigv4 import region_from_host

log = structlog.get_logger(__name__)
STORE_FILE = "trae2api.sqlite3"


def build_deps(
    settings: Settings, *, metrics: Metrics | None = None, drain: Drain | None = None
) -> Deps:
    metrics = metrics or Metrics()
    http = upstream_http_client(settings.upstream_connect_timeout, settings.upstream_read_timeout)
    # The chat stream's own lean client: the hot path; httpx keeps every other call.
    streams = StreamPool(
        StreamTimeouts(
            connect=settings.upstream_connect_timeout, read=settings.upstream_read_timeout
        ),
        max_connections=1000,
        max_keepalive=200,
    )
    store = open_store(settings)
    account = CredentialManager(
        store=store,
        rotator=MeteredRotator(DetachedRotator(rotation_setup(settings)), metrics),
        seed_refresh_token=settings.refresh_token.get_secret_value(),
        refresh_margin=settings.refresh_margin,
        refresh_lock_ttl=settings.refresh_lock_ttl,
        refresh_lock_wait=settings.refresh_lock_wait,
    )
    health = UpstreamHealth()
    dialect = _selector(settings, http, streams, account, settings.data_dir / STORE_FILE)
    catalog = ModelCatalog(
        dialect,
        account,
        health,
        ttl=settings.models_ttl,
        version_code=settings.ide_version_code,
    )
    if settings.app_id == AGENT_APP_ID:
        dialect.on_switch(lambda: _warn_legacy_app_id(dialect))
    attachments = Attachments(
        ImageFetcher(
            max_bytes=settings.max_image_bytes,
            timeout=settings.image_fetch_timeout,
            allow_private=settings.allow_private_image_urls,
            verify=_image_tls(settings),
        ),
        catalog,
        max_bytes=settings.max_image_bytes,
        # INLINE_REMOTE_IMAGES=false only where the legacy dialect (which needs bytes) cannot be
        # chosen: with UPSTREAM_DIALECT=agent.
        inline_remote=settings.inline_remote_images or settings.upstream_dialect != "agent",
    )
    tuning = ChatTuning(
        retries=settings.upstream_retries,
        queue_timeout=settings.queue_timeout,
        keepalive_interval=settings.keepalive_interval,
        first_byte_timeout=settings.upstream_read_timeout,
    )
    # GATE-B (issue 10): credits (dialect §7) from notify_usage and the balance endpoint.
    credits = Credits(low_threshold=settings.credits_low_threshold, metrics=metrics)
    balance = BalanceClient(
        http,
        account,
        hosts=balance_hosts(settings.refresh_token_url),
        ide_version=settings.ide_version,
    )
    # end GATE-B
    chat = ChatService(
        dialect=dialect,
        account=account,
        health=health,
        tuning=tuning,
        attachments=attachments,
        metrics=metrics,
        drain=drain,
        credits=credits,  # GATE-B (issue 10)
    )
    deps = Deps(http, streams, store, account, dialect, catalog, chat, health, attachments)
    deps.credits, deps.balance = credits, balance  # GATE-B (issue 10)
    if settings.redis_url is not None:  # shared by replicas; else each keeps its own
        deps.responses = RedisResponseStore(settings.redis_url, prefix=settings.redis_key_prefix)
    return deps


def _selector(
    settings: Settings,
    http: httpx.AsyncClient,
    streams: StreamPool,
    account: CredentialManager,
    store_path: Path,
) -> DialectSelector:
    """UPSTREAM_DIALECT: one dialect, or (auto) the candidates the selector probes."""
    identity = UpstreamIdentity(settings.app_id, settings.ide_version, settings.ide_version_code)
    mode = settings.upstream_dialect
    hosts = [settings.base_url]
    if mode == "auto" and settings.agent_base_url != settings.base_url:
        hosts.append(settings.agent_base_url)  # dialect §1: the region's agent host
    agents = [
        _agent_dialect(settings, http, streams, identity, account, host)
        for host in (hosts if mode != "legacy" else [])
    ]
    legacy = None
    if mode != "agent":
        legacy = (
            _legacy_dialect(settings, http, streams, identity, account, store_path),
            settings.base_url,
        )
    return DialectSelector(
        mode,
        agents=agents,
        legacy=legacy,
        account=account,
        version_code=settings.ide_version_code,
        recheck_interval=settings.dialect_recheck_interval,
    )


def _agent_dialect(
    settings: Settings,
    http: httpx.AsyncClient,
    streams: StreamPool,
    identity: UpstreamIdentity,
    account: CredentialManager,
    host: str,
) -> AgentDialect:
    client = AgentClient(
        http,
        streams,
        base_url=host,
        identity=identity,
        user_id=settings.user_id,
        pools=settings.pools,
    )
    return AgentDialect(
        client,
        account,
        AliasTable(settings.model_aliases, legacy=False),
        inline_remote_images=settings.inline_remote_images,
    )


def _legacy_dialect(
    settings: Settings,
    http: httpx.AsyncClient,
    streams: StreamPool,
    identity: UpstreamIdentity,
    account: CredentialManager,
    store_path: Path,
) -> LegacyDialect:
    legacy = TraeClient(http, streams, base_url=settings.base_url, identity=identity)
    uploader = ImageUploader(
        http,
        base_url=settings.base_url,
        credentials_path=settings.upload_token_path,
        file_id_url=settings.get_file_id_url,
        upload_url=settings.upload_file_url,
        region=_imagex_region(settings),
        service_name=settings.imagex_service_name,
        headers=legacy.headers,
        cache=_upload_cache(settings, store_path),
        cache_ttl=settings.image_cache_ttl,
    )
    return LegacyDialect(
        legacy,
        version_code=int(settings.ide_version_code),
        aliases=AliasTable(settings.model_aliases, legacy=True),
        uploader=uploader,
        account=account,
        media_item=settings.multi_media_item,
    )


def _warn_legacy_app_id(dialect: DialectSelector) -> None:
    # Dialect §2: Trae's product app id is what the agent dialect takes; the legacy chat was
    # seen only with the account's own (protocol §1).
    if dialect.name == "legacy":
        log.warning(
            "upstream.legacy_without_app_id",
            fix="set APP_ID to the app id in Trae's ai_1_stdout.log",
        )


def open_store(settings: Settings) -> CredentialStore:
    """REDIS_URL set: the Redis store shared by replicas; otherwise SQLite in DATA_DIR."""
    if settings.redis_url is None:
        return SqliteStore(settings.data_dir / STORE_FILE)
    try:
        from trae2api.auth.redis_store import RedisStore
    except ImportError:
        raise ConfigError(
            "REDIS_URL", "needs the redis extra: pip install 'trae2api[redis]'"
        ) from None
    return RedisStore(settings.redis_url, prefix=settings.redis_key_prefix)


def rotation_setup(settings: Settings) -> RotationSetup:
    """What the rotation process (``python -m trae2api.process.rotator``) needs: store and Trae."""
    return RotationSetup(
        store="sqlite" if settings.redis_url is None else "redis",
        exchange_url=settings.refresh_token_url,  # a comma list: upstream/exchange.py
        client_id=settings.client_id,
        user_id=settings.user_id,
        sqlite_path=str(settings.data_dir / STORE_FILE),
        redis_url=settings.redis_url or "",
        redis_prefix=settings.redis_key_prefix,
        connect_timeout=settings.upstream_connect_timeout,
        read_timeout=settings.upstream_read_timeout,
        lock_ttl=settings.refresh_lock_ttl,
        log_level=settings.log_level,
        log_format=settings.log_format,
    )


def _upload_cache(settings: Settings, store_path: Path) -> UploadCache:
    if settings.redis_url is None:
        return SqliteUploadCache(store_path)
    return RedisUploadCache(settings.redis_url, prefix=settings.redis_key_prefix)


def _imagex_region(settings: Settings) -> str:
    # Protocol §8: the host's region, else IMAGEX_REGION, else ap-singapore-1.
    host = httpx.URL(settings.get_file_id_url).host
    return region_from_host(host) or settings.imagex_region or "ap-singapore-1"


def _image_tls(settings: Settings) -> ssl.SSLContext | bool:
    if settings.image_fetch_ca_bundle is None:
        return True
    context = ssl.create_default_context()
    context.load_verify_locations(cafile=str(settings.image_fetch_ca_bundle))
    return context


def _lifespan(
    settings: Settings, deps: Deps | None
) -> Callable[[FastAPI], contextlib.AbstractAsyncContextManager[None]]:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime: Runtime = app.state.runtime
        ready = deps or build_deps(settings, metrics=runtime.metrics, drain=runtime.drain)
        runtime.deps = ready
        runtime.drain.bind(asyncio.get_running_loop())
        await ready.account.start()
        ready.background.append(asyncio.create_task(ready.account.run_background_refresh()))
        ready.background.append(asyncio.create_task(_warm_up(ready)))
        # GATE-B (issue 10): the credits balance at start-up and every CREDITS_REFRESH_INTERVAL.
        if ready.credits and ready.balance and settings.credits_refresh_interval > 0:
            poll = poll_balance(
                ready.credits, ready.balance.remaining, settings.credits_refresh_interval
            )
            ready.background.append(asyncio.create_task(poll))
        # end GATE-B
        log.info("started", version=__version__, base_url=settings.base_url)
        try:
            yield
        finally:
            for task in ready.background:
                task.cancel()
            await asyncio.gather(*ready.background, return_exceptions=True)
            # A refresh in flight must finish writing the rotated token before the store closes.
            await ready.account.aclose()
            await ready.http.aclose()
            await ready.streams.aclose()
            await ready.attachments.aclose()
            await ready.responses.aclose()
            await ready.dialect.aclose()
            await ready.store.close()
            if runtime.rate_limiter is not None:
                await runtime.rate_limiter.aclose()

    return lifespan


async def _warm_up(deps: Deps) -> None:
    # Exchange early so the first client does not wait and /readyz turns green on its own.
    with contextlib.suppress(ApiError):
        await deps.account.access_token()
        await deps.catalog.entries()


def create_app(settings: Settings, deps: Deps | None = None) -> FastAPI:
    """The ASGI application for ``settings``; ``deps`` replaces the default wiring (tests)."""
    keys = client_key_pairs(settings)
    secrets_registry.add(settings.refresh_token.get_secret_value(), *(key for _, key in keys))
    secrets_registry.add_url_password(settings.redis_url)
    warn_short_keys(keys)
    app = FastAPI(
        title="trae2api",
        version=__version__,
        summary="OpenAI-compatible API for your own Trae IDE account",
        lifespan=_lifespan(settings, deps),
    )
    runtime = Runtime(
        settings=settings,
        client_keys=ClientKeys.named(keys),
        metrics=Metrics(),
        drain=Drain(settings.shutdown_grace),
        rate_limiter=build_rate_limiter(settings),
    )
    app.state.runtime = runtime  # read only through faces/runtime.py's dependencies
    error_handlers.install(app)
    routers = (
        chat_routes.router,
        anthropic_routes.router,
        anthropic_routes.root_router,
        responses_routes.router,
        model_routes.router,
        health_routes.router,
    )
    for router in routers:
        app.include_router(router)
    if settings.metrics_enabled:
        app.include_router(metrics_routes.router)
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    if settings.cors_origins:
        wildcard = settings.cors_origins == ["*"]
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            # Credentials are never allowed together with "*" (the CORS spec forbids it).
            allow_credentials=not wildcard,
            allow_methods=["GET", "POST", "OPTIONS"],
            allow_headers=[
                "authorization",
                "content-type",
                "x-api-key",
                "x-request-id",
                "anthropic-version",
                "anthropic-beta",
                "anthropic-dangerous-direct-browser-access",
            ],
            expose_headers=["x-request-id", "retry-after"],
        )
    app.add_middleware(
        RequestContext, metrics=runtime.metrics if settings.metrics_enabled else None
    )
    return app
