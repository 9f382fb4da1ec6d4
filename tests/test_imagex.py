"""The image upload pipeline (protocol §8) against the simulated upstream, over loopback HTTP."""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
import sqlite3
import stat
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

import simkit
from pngkit import png as png_bytes
from trae2api.auth.credentials import DeviceIdentity
from trae2api.auth.sqlite_store import SqliteStore
from trae2api.errors import UpstreamError, UpstreamRejected, UpstreamUnavailable
from trae2api.testing import SimulatedTrae
from trae2api.upstream.client import TraeClient, UpstreamIdentity
from trae2api.upstream.imagex import ImageUploader
from trae2api.upstream.streams import StreamPool, StreamTimeouts
from trae2api.upstream.upload_answers import STEP_COMMIT, UploadedImage
from trae2api.upstream.upload_cache import MemoryUploadCache, SqliteUploadCache, UploadCache
from trae2api.wire.images import ImageData, inspect_image

DEVICE = DeviceIdentity.generate()
MAX_BYTES = 1 << 20


def png(width: int, height: int, seed: int = 0) -> ImageData:
    """A valid RGB PNG as ImageData, distinct per ``seed``."""
    return inspect_image(png_bytes(width, height, seed), max_bytes=MAX_BYTES)


shared_sim, sim, token = simkit.sim_fixtures()


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10.0) as client:
        yield client


Factory = Callable[..., ImageUploader]


@pytest.fixture
def make_uploader(sim: SimulatedTrae, http: httpx.AsyncClient) -> Factory:
    """Uploaders aimed at the simulator for all three hosts; keyword arguments override."""
    identity = UpstreamIdentity(sim.account.app_id, "1.2.10", "20250325")
    streams = StreamPool(StreamTimeouts(connect=5, read=5))  # unused: headers only
    trae = TraeClient(http, streams, base_url=sim.url, identity=identity)

    def make(**overrides: Any) -> ImageUploader:
        options: dict[str, Any] = {
            "base_url": sim.url,
            "file_id_url": sim.url,
            "upload_url": sim.url,
            "region": "ap-singapore-1",
            "headers": trae.headers,
            "cache": MemoryUploadCache(),
        }
        options.update(overrides)
        return ImageUploader(http, **options)

    return make


def image_stats(sim: SimulatedTrae) -> dict[str, Any]:
    return sim.control.stats()


def expire_upload_credentials(sim: SimulatedTrae) -> None:
    sim.state.images.expire_credentials()


async def test_full_upload_returns_what_imagex_committed(
    sim: SimulatedTrae, token: str, make_uploader: Factory
) -> None:
    """A fresh image goes through all four steps and comes back as the simulator's image."""
    image = png(7, 5)
    uploaded = await make_uploader().upload(image, token, DEVICE)
    committed = sim.state.images.image(uploaded.uri)
    assert committed is not None
    assert committed.sha256 == image.sha256
    assert (uploaded.width, uploaded.height, uploaded.format) == (7, 5, "png")
    assert uploaded.md5 == hashlib.md5(image.data, usedforsecurity=False).hexdigest()
    stats = image_stats(sim)
    assert stats["upload_tokens_issued"] == 1
    assert stats["tos_uploads"] == stats["images_committed"] == 1
    assert stats["signature_failures"] == 0


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
async def test_cache_prevents_a_second_upload(
    sim: SimulatedTrae, token: str, make_uploader: Factory, tmp_path: Path, kind: str
) -> None:
    """Identical bytes are uploaded once, even by a second uploader sharing the cache."""
    cache: UploadCache = (
        MemoryUploadCache() if kind == "memory" else SqliteUploadCache(tmp_path / "state.db")
    )
    try:
        first = await make_uploader(cache=cache).upload(png(4, 4), token, DEVICE)
        again = await make_uploader(cache=cache).upload(png(4, 4), token, DEVICE)
        other = await make_uploader(cache=cache).upload(png(4, 4, seed=9), token, DEVICE)
    finally:
        await cache.close()
    assert again == first
    assert other.uri != first.uri
    assert image_stats(sim)["tos_uploads"] == 2


@pytest.mark.parametrize(
    ("how", "tokens_issued", "signature_failures"),
    [
        ("imagex_says_expired", 2, 1),  # ExpiredToken from ImageX: renewed, step retried once
        ("expired_time_passed", 2, 0),  # expired_time is near: renewed before use
    ],
)
async def test_expired_credentials_are_renewed(
    sim: SimulatedTrae,
    token: str,
    make_uploader: Factory,
    how: str,
    tokens_issued: int,
    signature_failures: int,
) -> None:
    """Expired upload credentials are replaced once and the upload then succeeds."""
    if how == "expired_time_passed":
        sim.control.configure(upload_credentials_ttl=30)  # inside the renewal margin
    uploader = make_uploader()
    await uploader.upload(png(3, 3, seed=1), token, DEVICE)
    if how == "imagex_says_expired":
        expire_upload_credentials(sim)
    uploaded = await uploader.upload(png(3, 3, seed=2), token, DEVICE)
    assert sim.state.images.image(uploaded.uri) is not None
    stats = image_stats(sim)
    assert stats["upload_tokens_issued"] == tokens_issued
    assert stats["signature_failures"] == signature_failures


async def test_crc_mismatch_is_a_clear_error_and_not_cached(
    sim: SimulatedTrae, token: str, make_uploader: Factory
) -> None:
    """TOS refusing the bytes' CRC fails step 3 by name; the next try uploads afresh."""
    uploader = make_uploader()
    sim.control.configure(corrupt_next_upload=1)
    with pytest.raises(UpstreamError, match=r"step 3 \(TOS upload\).*4002.*crc32 mismatch"):
        await uploader.upload(png(6, 2), token, DEVICE)
    uploaded = await uploader.upload(png(6, 2), token, DEVICE)
    assert sim.state.images.image(uploaded.uri) is not None
    assert image_stats(sim)["images_committed"] == 1


async def test_commit_failure_names_the_step(
    sim: SimulatedTrae, token: str, make_uploader: Factory
) -> None:
    """An ImageX 500 on commit is a retryable error naming step 4, without any credential."""
    sim.control.configure(fail_next_commit=1)
    with pytest.raises(UpstreamUnavailable) as caught:
        await make_uploader().upload(png(2, 2), token, DEVICE)
    message = caught.value.message
    assert STEP_COMMIT in message
    assert "InternalError" in message
    assert "AKTP" not in message
    assert "SpaceKey" not in message
    assert caught.value.code == "image_upload_failed"


async def test_concurrent_uploads_of_one_image_share_one_upload(
    sim: SimulatedTrae, token: str, make_uploader: Factory
) -> None:
    """Ten simultaneous uploads of the same bytes make one ImageX session and one TOS upload."""
    uploader = make_uploader(cache=None)
    image = png(9, 9)
    results = await asyncio.gather(*(uploader.upload(image, token, DEVICE) for _ in range(10)))
    assert len(set(results)) == 1
    stats = image_stats(sim)
    assert stats["imagex_apply"] == stats["tos_uploads"] == stats["images_committed"] == 1


async def test_a_cancelled_waiter_does_not_cancel_the_shared_upload(
    sim: SimulatedTrae, token: str, make_uploader: Factory
) -> None:
    """One caller giving up leaves the in-flight upload running for the others."""
    uploader = make_uploader(cache=None)
    image = png(5, 5, seed=3)
    impatient = asyncio.ensure_future(uploader.upload(image, token, DEVICE))
    patient = asyncio.ensure_future(uploader.upload(image, token, DEVICE))
    await asyncio.sleep(0)
    impatient.cancel()
    uploaded = await patient
    assert impatient.cancelled()
    assert sim.state.images.image(uploaded.uri) is not None


@pytest.mark.parametrize(
    ("overrides", "error", "pattern"),
    [
        ({"region": "us-east-1"}, UpstreamError, r"step 2 .*SignatureDoesNotMatch"),
        ({"service_name": "ImageX"}, UpstreamError, r"step 2 .*SignatureDoesNotMatch"),
        (
            {"credentials_path": "/api/ide/v1/no_such_path"},
            UpstreamError,
            r"step 1 .*UPLOAD_TOKEN_PATH",
        ),
        ({"file_id_url": "CLOSED"}, UpstreamUnavailable, r"could not be reached .*step 2 "),
        ({"upload_url": "CLOSED"}, UpstreamUnavailable, r"could not be reached .*step 3 "),
    ],
)
async def test_misconfiguration_fails_at_the_right_step(
    token: str,
    make_uploader: Factory,
    closed_url: str,
    overrides: dict[str, str],
    error: type[Exception],
    pattern: str,
) -> None:
    """A wrong region, service name, credential path or host fails with the step named."""
    options = {key: closed_url if value == "CLOSED" else value for key, value in overrides.items()}
    with pytest.raises(error, match=pattern):
        await make_uploader(**options).upload(png(2, 3), token, DEVICE)


async def test_refused_access_token_is_business_code_1001(make_uploader: Factory) -> None:
    """Step 1 with a refused Trae token raises code 1001 so the caller refreshes and retries."""
    with pytest.raises(UpstreamRejected) as caught:
        await make_uploader().upload(png(2, 2), "not-a-token", DEVICE)
    assert caught.value.upstream_code == 1001
    assert "step 1" in caught.value.message


@pytest.fixture
def closed_url() -> str:
    """The URL of a loopback port nobody listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


IMAGE = UploadedImage(uri="tos-sg16-i-x/abc.png", width=3, height=4, format="png", md5="m" * 32)


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
async def test_cache_ignores_and_prunes_expired_entries(tmp_path: Path, kind: str) -> None:
    """Expired entries are never returned and are dropped on the next write."""
    now = [1000.0]
    cache: UploadCache = (
        MemoryUploadCache(clock=lambda: now[0])
        if kind == "memory"
        else SqliteUploadCache(tmp_path / "state.db", clock=lambda: now[0])
    )
    try:
        await cache.put("a" * 64, IMAGE, expires_at=1500.0)
        assert await cache.get("a" * 64) == IMAGE
        assert await cache.get("b" * 64) is None
        now[0] = 1500.0
        assert await cache.get("a" * 64) is None
        await cache.put("c" * 64, IMAGE, expires_at=9000.0)
        assert await cache.get("c" * 64) == IMAGE
    finally:
        await cache.close()
    if kind == "sqlite":
        with sqlite3.connect(tmp_path / "state.db") as conn:
            rows = conn.execute("SELECT sha256 FROM image_uploads").fetchall()
        conn.close()
        assert rows == [("c" * 64,)]


async def test_sqlite_cache_shares_the_credential_database(tmp_path: Path) -> None:
    """The cache's table lives beside the credential store's in one 0600 file, untouched by it."""
    path = tmp_path / "data" / "trae2api.db"
    cache = SqliteUploadCache(path)
    store = SqliteStore(path)
    try:
        await cache.put("d" * 64, IMAGE, expires_at=4e9)
        assert await store.load() is None  # the store migrates the same file without complaint
        assert await cache.get("d" * 64) == IMAGE
    finally:
        await cache.close()
        await store.close()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    with sqlite3.connect(path) as conn:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
        journal = conn.execute("PRAGMA journal_mode").fetchone()[0]
    conn.close()
    assert {"account", "image_uploads"} <= tables
    assert journal == "wal"
