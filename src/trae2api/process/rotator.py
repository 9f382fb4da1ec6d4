"""The rotation process: ``python -m trae2api.process.rotator`` rotates the refresh token once.

``auth.rotation.DetachedRotator`` starts it so that the rotated token is stored even if the
gateway dies mid-exchange (protocol §2). One request on stdin, one reply on stdout; it must not
serve, schedule or retry rotations, and it ignores the signals that stop the gateway.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from pathlib import Path

import structlog

from trae2api.auth.refresh_lock import kept_alive
from trae2api.auth.rotation import (
    InlineRotator,
    Rotation,
    RotationRequest,
    RotationSetup,
    decode_request,
    encode_reply,
)
from trae2api.auth.sqlite_store import SqliteStore
from trae2api.auth.store import CredentialStore
from trae2api.log import configure_logging, secrets_registry
from trae2api.upstream.exchange import TokenExchanger
from trae2api.upstream.transport import upstream_http_client

log = structlog.get_logger("trae2api.process.rotator")

# A write that failed right after the exchange is retried: the gateway that would keep the
# unsaved token in memory may be gone, so this process is the token's last holder.
_WRITE_ATTEMPTS = 4
_WRITE_RETRY_DELAY = 0.5
_STORE_TIMEOUT = 10.0  # SqliteStore's busy timeout; RedisStore's socket timeout is shorter


def main() -> int:
    # SIGTERM/SIGINT/SIGHUP aimed at the gateway's service or terminal must not cut an exchange
    # between Trae burning the token and the durable write; this process ends on its own.
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    try:
        request = decode_request(sys.stdin.buffer.read())
    except ValueError as exc:
        print(f"trae2api.process.rotator: {exc}", file=sys.stderr)
        return 2
    # A last resort against a hung store or network: the default SIGALRM action ends us. It
    # cannot come while a healthy rotation runs (every step has a timeout of its own).
    signal.alarm(_lifetime(request.setup))
    configure_logging(request.setup.log_level, request.setup.log_format)
    secrets_registry.add(request.current.refresh_token, request.current.access_token)
    secrets_registry.add_url_password(request.setup.redis_url)
    outcome = asyncio.run(_rotate(request))
    try:
        sys.stdout.buffer.write(encode_reply(outcome))
        sys.stdout.buffer.flush()
    except BrokenPipeError:
        # The gateway is gone; whatever happened is in the store (or logged as unsaved).
        log.warning("credentials.rotated_without_gateway", outcome=_name(outcome))
    return 0


async def _rotate(request: RotationRequest) -> Rotation | BaseException:
    setup = request.setup
    store = _open_store(setup)
    # The gateway renews the lock while it waits for us; if it died, this keeps other processes
    # from presenting the (burnt) token until our write is done.
    keep_lock = kept_alive(store, request.lock_owner, setup.lock_ttl, log)
    try:
        http = upstream_http_client(setup.connect_timeout, setup.read_timeout)
        async with keep_lock, http:
            exchanger = TokenExchanger(
                http,
                base_url=setup.exchange_url,
                client_id=setup.client_id,
                user_id=setup.user_id,
            )
            rotation = await InlineRotator(exchanger, store).rotate(
                request.current, request.lock_owner
            )
            if rotation.outcome == "unsaved":
                rotation = await _retry_write(store, request.current.version, rotation)
        if rotation.credentials is not None:
            secrets_registry.add(
                rotation.credentials.refresh_token, rotation.credentials.access_token
            )
        return rotation
    except Exception as exc:
        return exc
    finally:
        with contextlib.suppress(Exception):
            await store.close()


async def _retry_write(store: CredentialStore, base: int, rotation: Rotation) -> Rotation:
    new = rotation.credentials
    assert new is not None
    for _ in range(_WRITE_ATTEMPTS):
        await asyncio.sleep(_WRITE_RETRY_DELAY)
        try:
            won = await store.compare_and_set(base, new)
        except Exception:  # noqa: S112 (the reply carries the first error)
            continue
        return Rotation("stored", new) if won else Rotation("lost_race")
    log.error("credentials.store_failed", error=rotation.error, version=new.version)
    return rotation


def _open_store(setup: RotationSetup) -> CredentialStore:
    if setup.store == "redis":
        from trae2api.auth.redis_store import RedisStore

        return RedisStore(setup.redis_url, prefix=setup.redis_prefix)
    return SqliteStore(Path(setup.sqlite_path))


def _lifetime(setup: RotationSetup) -> int:
    exchange = setup.connect_timeout + setup.read_timeout + 30.0  # + the write timeout
    writes = _WRITE_ATTEMPTS * (_WRITE_RETRY_DELAY + _STORE_TIMEOUT) + _STORE_TIMEOUT
    return int(exchange + writes + 60)


def _name(outcome: Rotation | BaseException) -> str:
    return outcome.outcome if isinstance(outcome, Rotation) else type(outcome).__name__


if __name__ == "__main__":
    sys.exit(main())
