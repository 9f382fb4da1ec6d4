"""The image upload pipeline of protocol §8: upload credentials, ImageX apply, TOS bytes, commit.

Owns the four calls, the short-lived upload credentials (in memory, renewed when they expire or
ImageX calls them expired, then that step is retried once), the upload cache lookups and one
in-flight upload per image digest; reading the answers is ``upstream.upload_answers``. It must
not refresh Trae access tokens (a 401 on step 1 is raised as business code 1001 for the caller),
pick the ImageX region, or decide how a chat refers to an uploaded image.
"""

from __future__ import annotations

import asyncio
import time
import zlib
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar
from urllib.parse import quote

import httpx
import orjson
import structlog

from trae2api.auth.credentials import DeviceIdentity
from trae2api.errors import CredentialsExpired
from trae2api.log import secrets_registry
from trae2api.upstream.transport import mapped_transport_errors
from trae2api.upstream.upload_answers import (
    STEP_APPLY,
    STEP_COMMIT,
    STEP_CREDENTIALS,
    STEP_UPLOAD,
    UploadAddress,
    UploadCredentials,
    UploadedImage,
    check_tos,
    committed,
    credentials_answer,
    imagex_result,
    upload_address,
    upload_hosts,
)
from trae2api.wire import sigv4
from trae2api.wire.images import ImageData

log = structlog.get_logger(__name__)
_T = TypeVar("_T")

IMAGEX_VERSION = "2018-08-01"


class UploadCache(Protocol):
    """Uploaded images by the SHA-256 of their bytes; expired entries are never returned."""

    async def get(self, sha256: str) -> UploadedImage | None: ...

    async def put(self, sha256: str, image: UploadedImage, expires_at: float) -> None: ...

    async def close(self) -> None: ...


class ImageUploader:
    """Uploads images for one Trae account and returns what ImageX committed."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        base_url: str,
        credentials_path: str = "/api/ide/v1/get_upload_token",
        file_id_url: str,
        upload_url: str,
        region: str,
        service_name: str = "imagex",
        headers: Callable[[str, DeviceIdentity], dict[str, str]],
        cache: UploadCache | None = None,
        cache_ttl: float = 7 * 86400,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._http = http
        self._credentials_url = f"{base_url.rstrip('/')}{credentials_path}"
        self._file_id_url = file_id_url.rstrip("/")
        self._upload_url = upload_url.rstrip("/")
        self._region = region
        self._service = service_name
        self._headers = headers
        self._cache = cache
        self._cache_ttl = cache_ttl
        self._clock = clock
        self._credentials: UploadCredentials | None = None
        self._credentials_lock = asyncio.Lock()
        self._inflight: dict[str, asyncio.Future[UploadedImage]] = {}

    async def upload(
        self, image: ImageData, access_token: str, device: DeviceIdentity
    ) -> UploadedImage:
        """The image uploaded and committed, or the cached result of an earlier identical upload.

        Concurrent calls for the same bytes share one upload; a caller that is cancelled does
        not cancel it for the others.
        """
        cached = await self._cached(image.sha256)
        if cached is not None:
            return cached
        task = self._inflight.get(image.sha256)
        if task is None:
            task = asyncio.ensure_future(self._upload_and_remember(image, access_token, device))
            self._inflight[image.sha256] = task
            task.add_done_callback(lambda done: self._forget(image.sha256, done))
        return await asyncio.shield(task)

    async def close(self) -> None:
        """Close the upload cache (the HTTP client belongs to the caller)."""
        if self._cache is not None:
            await self._cache.close()

    def _forget(self, sha256: str, task: asyncio.Future[UploadedImage]) -> None:
        if self._inflight.get(sha256) is task:
            del self._inflight[sha256]
        if not task.cancelled():
            task.exception()  # retrieved here: every waiter may have gone away

    async def _upload_and_remember(
        self, image: ImageData, access_token: str, device: DeviceIdentity
    ) -> UploadedImage:
        credentials = await self._current_credentials(access_token, device)
        address, credentials = await self._renewing(
            lambda creds: self._apply(creds, image), credentials, access_token, device
        )
        await self._put_bytes(address, image.data)
        uploaded, _ = await self._renewing(
            lambda creds: self._commit(creds, address, image), credentials, access_token, device
        )
        log.info("image_uploaded", uri=uploaded.uri, bytes=len(image.data), format=image.format)
        await self._remember(image.sha256, uploaded)
        return uploaded

    # -- step 1: credentials ---------------------------------------------------------------------

    async def _current_credentials(
        self, access_token: str, device: DeviceIdentity
    ) -> UploadCredentials:
        async with self._credentials_lock:
            credentials = self._credentials
            if credentials is None or not credentials.usable(self._clock()):
                credentials = await self._fetch_credentials(access_token, device)
                self._credentials = credentials
            return credentials

    async def _renewing(
        self,
        step: Callable[[UploadCredentials], Awaitable[_T]],
        credentials: UploadCredentials,
        access_token: str,
        device: DeviceIdentity,
    ) -> tuple[_T, UploadCredentials]:
        """Run ``step``; if ImageX calls the credentials expired, renew them and retry once."""
        try:
            return await step(credentials), credentials
        except CredentialsExpired:
            if self._credentials is credentials:
                self._credentials = None
            credentials = await self._current_credentials(access_token, device)
        try:
            return await step(credentials), credentials
        except CredentialsExpired as again:
            raise again.error from None

    async def _fetch_credentials(
        self, access_token: str, device: DeviceIdentity
    ) -> UploadCredentials:
        with mapped_transport_errors(f"uploading an image, at {STEP_CREDENTIALS}"):
            response = await self._http.get(
                self._credentials_url, headers=self._headers(access_token, device)
            )
        credentials = credentials_answer(
            response.status_code,
            response.content,
            response.headers,
            path=httpx.URL(self._credentials_url).path,
        )
        secrets_registry.add(
            credentials.access_key_id, credentials.secret_access_key, credentials.session_token
        )
        return credentials

    # -- steps 2 and 4: ImageX -------------------------------------------------------------------

    async def _apply(self, credentials: UploadCredentials, image: ImageData) -> UploadAddress:
        size, extension = str(len(image.data)), image.extension
        query = _query("ApplyImageUpload", credentials, FileSize=size, FileExtension=extension)
        result = await self._imagex("GET", query, b"", credentials, STEP_APPLY)
        address = upload_address(result)
        secrets_registry.add(address.auth, address.session_key)
        log.debug("imagex_upload_hosts", hosts=upload_hosts(result))  # §8: logged only
        return address

    async def _commit(
        self, credentials: UploadCredentials, address: UploadAddress, image: ImageData
    ) -> UploadedImage:
        body = orjson.dumps({"SessionKey": address.session_key})
        query = _query("CommitImageUpload", credentials)
        result = await self._imagex("POST", query, body, credentials, STEP_COMMIT)
        return committed(result, address, image)

    async def _imagex(
        self,
        method: str,
        query: str,
        body: bytes,
        credentials: UploadCredentials,
        step: str,
    ) -> dict[str, Any]:
        """A SigV4-signed ImageX call; its ``Result``, or an error naming ``step``."""
        url = f"{self._file_id_url}/?{query}"
        headers = {"Content-Type": "application/json"} if body else {}
        headers |= sigv4.sign(
            method,
            url,
            headers,
            body,
            access_key=credentials.access_key_id,
            secret_key=credentials.secret_access_key,
            session_token=credentials.session_token,
            region=self._region,
            service=self._service,
            now=datetime.fromtimestamp(self._clock(), UTC),
        )
        with mapped_transport_errors(f"uploading an image, at {step}"):
            response = await self._http.request(method, url, content=body or None, headers=headers)
        return imagex_result(response.status_code, response.content, step)

    # -- step 3: TOS -----------------------------------------------------------------------------

    async def _put_bytes(self, address: UploadAddress, data: bytes) -> None:
        crc = f"{zlib.crc32(data) & 0xFFFFFFFF:08x}"
        url = f"{self._upload_url}/upload/v1/{quote(address.store_uri, safe='/')}"
        headers = {
            "Authorization": address.auth,
            "Content-CRC32": crc,
            "Content-Type": "application/octet-stream",
        }
        with mapped_transport_errors(f"uploading an image, at {STEP_UPLOAD}"):
            response = await self._http.post(url, content=data, headers=headers)
        check_tos(response.status_code, response.content, crc)

    # -- cache -----------------------------------------------------------------------------------

    async def _cached(self, sha256: str) -> UploadedImage | None:
        if self._cache is None:
            return None
        try:
            return await self._cache.get(sha256)
        except Exception as exc:  # a broken cache costs an upload, never the request
            log.warning("image_upload_cache_unreadable", error=type(exc).__name__)
            return None

    async def _remember(self, sha256: str, uploaded: UploadedImage) -> None:
        if self._cache is None:
            return
        try:
            await self._cache.put(sha256, uploaded, expires_at=self._clock() + self._cache_ttl)
        except Exception as exc:
            log.warning("image_upload_cache_unwritable", error=type(exc).__name__)


def _query(action: str, credentials: UploadCredentials, **extra: str) -> str:
    """ImageX's query string (keys in the documented order; the signature sorts its own copy)."""
    params = {"Action": action, "Version": IMAGEX_VERSION, "ServiceId": credentials.service_id}
    return "&".join(f"{k}={sigv4.uri_encode(v)}" for k, v in (params | extra).items())
