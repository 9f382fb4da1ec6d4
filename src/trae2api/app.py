"""Assembly: ``create_app(settings, deps=None)`` wires the parts and owns their lifetime.

Nothing here decides behaviour; it builds the objects, mounts the routes and middleware, and
starts/stops the background credential refresh.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import structlog
from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware

from trae2api import __version__
from trae2api.api import chat as chat_routes
from trae2api.api import errors as error_handlers
from trae2api.api import health as health_routes
from trae2api.api import metrics as metrics_routes
from trae2api.api import models as model_routes
from trae2api.api.keys import client_key_pairs, warn_short_keys
from trae2api.api.middleware import BodyLimit, RequestContext
from trae2api.api.ratelimit import build_rate_limiter
from trae2api.api.security import ClientKeys
from trae2api.attachments import Attachments
from trae2api.auth.manager import CredentialManager
from trae2api.auth.rotation import DetachedRotator, RotationSetup
from trae2api.auth.sqlite_store import SqliteStore
from trae2api.auth.store import CredentialStore
from trae2api.chat import ChatService, ChatTuning
from trae2api.config import Settings
from trae2api.dialect import AgentDialect, Dialect, LegacyDialect
from trae2api.errors import ApiError, ConfigError
from trae2api.imagefetch import ImageFetcher
from trae2api.log import secrets_registry
from trae2api.models import AliasTable, ModelCatalog, fetch_model_configs
from trae2api.shutdown import Drain
from trae2api.sigv4 import region_from_host
from trae2api.status.health import UpstreamHealth
from trae2api.status.metrics import MeteredRotator, Metrics
from trae2api.upstream.agent_client import AgentClient
from trae2api.upstream.client import TraeClient, UpstreamIdentity
from trae2api.upstream.imagex import ImageUploader
from trae2api.upstream.streams import StreamPool, StreamTimeouts
from trae2api.upstream.transport import upstream_http_client
from trae2api.upstream.upload_cache import RedisUploadCache, SqliteUploadCache, UploadCache

log = structlog.get_logger(__name__)
STORE_FILE = "trae2api.sqlite3"


@dataclass
class Deps:
    """Everything a request handler may use; built once per process."""

    http: httpx.AsyncClient
    streams: StreamPool
    store: CredentialStore
    account: CredentialManager
    dialect: Dialect
    catalog: ModelCatalog
    chat: ChatService
    health: UpstreamHealth
    attachments: Attachments
    background: list[asyncio.Task[Any]] = field(default_factory=list)

    async def probe(self) -> None:
        """Ask Trae for the model list now (readiness), bypassing the catalogue's cache."""
        await fetch_model_configs(self.dialect, self.account, self.health)


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
    identity = UpstreamIdentity(settings.app_id, settings.ide_version, settings.ide_version_code)
    health = UpstreamHealth()
    aliases = AliasTable(settings.model_aliases, legacy=settings.upstream_dialect == "legacy")

    async def fetch_catalogue() -> list[dict[str, Any]]:
        # The dialect is bound below: the agent dialect asks the catalogue for model limits.
        return await fetch_model_configs(dialect, account, health)

    catalog = ModelCatalog(fetch_catalogue, aliases, ttl=settings.models_ttl)
    dialect = _dialect(
        settings, http, streams, identity, catalog, account, settings.data_dir / STORE_FILE
    )
    attachments = Attachments(
        ImageFetcher(
            max_bytes=settings.max_image_bytes,
            timeout=settings.image_fetch_timeout,
            allow_private=settings.allow_private_image_urls,
            verify=_image_tls(settings),
        ),
        catalog,
        max_bytes=settings.max_image_bytes,
        inline_remote=dialect.needs_image_bytes,
    )
    tuning = ChatTuning(
        retries=settings.upstream_retries,
        queue_timeout=settings.queue_timeout,
        keepalive_interval=settings.keepalive_interval,
    )
    chat = ChatService(
        dialect=dialect,
        account=account,
        health=health,
        tuning=tuning,
        attachments=attachments,
        metrics=metrics,
        drain=drain,
    )
    return Deps(http, streams, store, account, dialect, catalog, chat, health, attachments)


def _dialect(
    settings: Settings,
    http: httpx.AsyncClient,
    streams: StreamPool,
    identity: UpstreamIdentity,
    catalog: ModelCatalog,
    account: CredentialManager,
    store_path: Path,
) -> Dialect:
    """UPSTREAM_DIALECT picks the adapter; both share everything else."""
    if settings.upstream_dialect == "agent":
        client = AgentClient(
            http,
            streams,
            base_url=settings.base_url,
            identity=identity,
            user_id=settings.user_id,
            pool=settings.trae_function,
        )
        return AgentDialect(
            client,
            catalog,
            catalog.aliases.to_trae,
            inline_remote_images=settings.inline_remote_images,
        )
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
        to_trae=catalog.aliases.to_trae,
        uploader=uploader,
        account=account,
        media_item=settings.multi_media_item,
        models=catalog,
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
    """What the rotation process (``python -m trae2api.rotator``) needs to reach store and Trae."""
    return RotationSetup(
        store="sqlite" if settings.redis_url is None else "redis",
        exchange_url=settings.refresh_token_url,
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
        ready = deps or build_deps(settings, metrics=app.state.metrics, drain=app.state.drain)
        app.state.deps = ready
        app.state.drain.bind(asyncio.get_running_loop())
        await ready.account.start()
        ready.background.append(asyncio.create_task(ready.account.run_background_refresh()))
        ready.background.append(asyncio.create_task(_warm_up(ready)))
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
            await ready.dialect.aclose()
            await ready.store.close()
            if app.state.rate_limiter is not None:
                await app.state.rate_limiter.aclose()

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
    app.state.settings = settings
    app.state.client_keys = ClientKeys.named(keys)
    app.state.metrics = Metrics()
    app.state.drain = Drain(settings.shutdown_grace)
    app.state.rate_limiter = build_rate_limiter(settings)
    error_handlers.install(app)
    for router in (chat_routes.router, model_routes.router, health_routes.router):
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
            allow_headers=["authorization", "content-type", "x-api-key", "x-request-id"],
            expose_headers=["x-request-id", "retry-after"],
        )
    app.add_middleware(
        RequestContext, metrics=app.state.metrics if settings.metrics_enabled else None
    )
    return app
