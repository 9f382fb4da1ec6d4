"""The image upload pipeline of protocol §8: upload credentials, ImageX apply, TOS bytes, commit.

Owns the four steps, the short-lived upload credentials (in memory, renewed when they expire or
ImageX calls them expired, then that step is retried once), the upload cache lookups and one
in-flight upload per image digest. It must not refresh Trae access tokens (a 401 on step 1 is
raised as business code 1001 for the caller), pick the ImageX region, or decide how a chat refers
to an uploaded image. Error messages name the failed step and never carry keys, tokens or Auth.
"""

from __future__ import annotations

import asyncio
import time
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar
from urllib.parse import quote

import httpx
import orjson
import structlog

from trae2api import sigv4
from trae2api.auth.credentials import DeviceIdentity
from trae2api.errors import ApiError, UpstreamError, UpstreamUnavailable, from_business_code
from trae2api.images import ImageData
from trae2api.log import secrets_registry
from trae2api.upstream.client import business_code, http_error
from trae2api.upstream.transport import mapped_transport_errors

log = structlog.get_logger(__name__)
_T = TypeVar("_T")

IMAGEX_VERSION = "2018-08-01"
STEP_CREDENTIALS = "step 1 (upload credentials)"
STEP_APPLY = "step 2 (ImageX ApplyImageUpload)"
STEP_UPLOAD = "step 3 (TOS upload)"
STEP_COMMIT = "step 4 (ImageX CommitImageUpload)"
_SUCCESS = 2000
# Credentials this close to expired_time are renewed before use rather than refused mid-upload.
_CREDENTIALS_MARGIN = 60.0
_EXPIRED_CODES = frozenset({"ExpiredToken", "TokenExpired", "InvalidSecurityToken"})
_ERROR_CODE = "image_upload_failed"
_MESSAGE_LIMIT = 300


@dataclass(frozen=True)
class UploadedImage:
    """A committed image as ImageX describes it (what a ``multi_media`` item refers to)."""

    uri: str
    width: int
    height: int
    format: str
    md5: str


class UploadCache(Protocol):
    """Uploaded images by the SHA-256 of their bytes; expired entries are never returned."""

    async def get(self, sha256: str) -> UploadedImage | None: ...

    async def put(self, sha256: str, image: UploadedImage, expires_at: float) -> None: ...

    async def close(self) -> None: ...


@dataclass(frozen=True)
class UploadCredentials:
    """Short-lived upload credentials from Trae (step 1); ``expires_at`` in epoch seconds."""

    access_key_id: str
    secret_access_key: str = field(repr=False)
    session_token: str = field(repr=False)
    service_id: str
    expires_at: float | None

    def usable(self, now: float, margin: float = _CREDENTIALS_MARGIN) -> bool:
        return self.expires_at is None or self.expires_at - margin > now


@dataclass(frozen=True)
class _Address:
    """Step 2's answer: where the bytes go and how to commit them."""

    store_uri: str
    auth: str = field(repr=False)
    session_key: str = field(repr=False)


class _CredentialsExpired(Exception):
    """ImageX refused the upload credentials as expired; ``error`` is raised if renewing fails."""

    def __init__(self, error: UpstreamError) -> None:
        super().__init__(error.message)
        self.error = error


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
        except _CredentialsExpired:
            if self._credentials is credentials:
                self._credentials = None
            credentials = await self._current_credentials(access_token, device)
        try:
            return await step(credentials), credentials
        except _CredentialsExpired as again:
            raise again.error from None

    async def _fetch_credentials(
        self, access_token: str, device: DeviceIdentity
    ) -> UploadCredentials:
        with mapped_transport_errors(f"uploading an image, at {STEP_CREDENTIALS}"):
            response = await self._http.get(
                self._credentials_url, headers=self._headers(access_token, device)
            )
        payload = _json(response.content)
        if response.status_code == 404:
            raise _failure(
                STEP_CREDENTIALS,
                f"Trae has no upload-credential endpoint at {httpx.URL(self._credentials_url).path}"
                " (this path is not publicly documented; UPLOAD_TOKEN_PATH sets it)",
            )
        if response.status_code != 200:
            raise _in_step(
                http_error(response.status_code, response.content, response.headers),
                STEP_CREDENTIALS,
            )
        found = business_code(payload)
        if found is not None:
            raise _in_step(from_business_code(*found), STEP_CREDENTIALS)
        credentials = parse_credentials(payload)
        if credentials is None:
            raise _failure(STEP_CREDENTIALS, "Trae's answer had no usable upload credentials")
        secrets_registry.add(
            credentials.access_key_id, credentials.secret_access_key, credentials.session_token
        )
        return credentials

    # -- steps 2 and 4: ImageX -------------------------------------------------------------------

    async def _apply(self, credentials: UploadCredentials, image: ImageData) -> _Address:
        size, extension = str(len(image.data)), image.extension
        query = _query("ApplyImageUpload", credentials, FileSize=size, FileExtension=extension)
        result = await self._imagex("GET", query, b"", credentials, STEP_APPLY)
        return _upload_address(result)

    async def _commit(
        self, credentials: UploadCredentials, address: _Address, image: ImageData
    ) -> UploadedImage:
        body = orjson.dumps({"SessionKey": address.session_key})
        query = _query("CommitImageUpload", credentials)
        result = await self._imagex("POST", query, body, credentials, STEP_COMMIT)
        return _committed(result, address, image)

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
        return _imagex_result(response, step)

    # -- step 3: TOS -----------------------------------------------------------------------------

    async def _put_bytes(self, address: _Address, data: bytes) -> None:
        crc = f"{zlib.crc32(data) & 0xFFFFFFFF:08x}"
        url = f"{self._upload_url}/upload/v1/{quote(address.store_uri, safe='/')}"
        headers = {
            "Authorization": address.auth,
            "Content-CRC32": crc,
            "Content-Type": "application/octet-stream",
        }
        with mapped_transport_errors(f"uploading an image, at {STEP_UPLOAD}"):
            response = await self._http.post(url, content=data, headers=headers)
        _check_tos(response, crc)

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


def parse_credentials(payload: Any) -> UploadCredentials | None:
    """Step 1's ``{"data": {access_key_id, secret_access_key, session_token, service_id,
    expired_time?}}``; ``expired_time`` in epoch seconds (milliseconds tolerated)."""
    data = payload.get("data") if isinstance(payload, dict) else None
    if not isinstance(data, dict):
        return None
    keys = ("access_key_id", "secret_access_key", "session_token", "service_id")
    values = [data.get(key) for key in keys]
    if not all(isinstance(value, str) and value for value in values):
        return None
    access_key_id, secret, token, service_id = (str(value) for value in values)
    return UploadCredentials(access_key_id, secret, token, service_id, _epoch(data))


def _epoch(data: dict[str, Any]) -> float | None:
    try:
        seconds = float(data["expired_time"])
    except (KeyError, TypeError, ValueError):
        return None
    return seconds / 1000.0 if seconds > 1e12 else seconds


def _imagex_result(response: httpx.Response, step: str) -> dict[str, Any]:
    payload = _json(response.content)
    status = response.status_code
    error = _imagex_error(payload)
    if error is not None:
        code, message = error
        failure = _failure(step, f"ImageX error {code}: {message}", status=status)
        if code in _EXPIRED_CODES:
            raise _CredentialsExpired(failure)
        raise failure
    if status != 200:
        raise _failure(step, f"ImageX answered HTTP {status}", status=status)
    result = payload.get("Result") if isinstance(payload, dict) else None
    if not isinstance(result, dict):
        raise _failure(step, "ImageX answered without a Result")
    return result


def _imagex_error(payload: Any) -> tuple[str, str] | None:
    """``ResponseMetadata.Error``'s code and message, if the answer carries one."""
    meta = payload.get("ResponseMetadata") if isinstance(payload, dict) else None
    error = meta.get("Error") if isinstance(meta, dict) else None
    if not isinstance(error, dict) or not error.get("Code"):
        return None
    return str(error["Code"]), str(error.get("Message") or "")


def _upload_address(result: dict[str, Any]) -> _Address:
    address = result.get("UploadAddress")
    address = address if isinstance(address, dict) else {}
    infos = address.get("StoreInfos")
    first = infos[0] if isinstance(infos, list) and infos and isinstance(infos[0], dict) else {}
    store_uri, auth = first.get("StoreUri"), first.get("Auth")
    session_key = address.get("SessionKey")
    if not all(isinstance(value, str) and value for value in (store_uri, auth, session_key)):
        raise _failure(STEP_APPLY, "ImageX answered without StoreInfos[0] and SessionKey")
    secrets_registry.add(str(auth), str(session_key))
    log.debug("imagex_upload_hosts", hosts=address.get("UploadHosts"))  # §8: logged only
    return _Address(str(store_uri), str(auth), str(session_key))


def _check_tos(response: httpx.Response, crc: str) -> None:
    payload = _json(response.content)
    status = response.status_code
    code = business_code(payload)
    if code is not None and code[0] != _SUCCESS:
        raise _failure(STEP_UPLOAD, f"TOS error {code[0]}: {code[1]}", status=status)
    if status != 200 or code is None:
        raise _failure(STEP_UPLOAD, f"TOS answered HTTP {status} without code 2000", status=status)
    data = payload.get("data")
    echoed = data.get("crc32") if isinstance(data, dict) else None
    if echoed is not None and str(echoed).lower().rjust(8, "0") != crc and echoed != int(crc, 16):
        raise _failure(STEP_UPLOAD, f"TOS stored CRC32 {echoed!s:.16}, not {crc}")


def _committed(result: dict[str, Any], address: _Address, image: ImageData) -> UploadedImage:
    results, plugins = result.get("Results"), result.get("PluginResult")
    first = results[0] if isinstance(results, list) and results else None
    status = first.get("UriStatus") if isinstance(first, dict) else None
    if str(status) != str(_SUCCESS):
        raise _failure(STEP_COMMIT, f"ImageX committed {address.store_uri} with UriStatus {status}")
    plugin = plugins[0] if isinstance(plugins, list) and plugins else None
    if not isinstance(plugin, dict) or not plugin.get("ImageUri"):
        raise _failure(STEP_COMMIT, "ImageX answered without PluginResult[0].ImageUri")
    try:
        return UploadedImage(
            uri=str(plugin["ImageUri"]),
            width=int(plugin.get("ImageWidth") or image.width),
            height=int(plugin.get("ImageHeight") or image.height),
            format=str(plugin.get("ImageFormat") or image.format).lower(),
            md5=str(plugin.get("ImageMd5") or ""),
        )
    except (TypeError, ValueError):
        raise _failure(STEP_COMMIT, "ImageX described the image with malformed fields") from None


def _failure(step: str, detail: str, *, status: int = 200) -> UpstreamError:
    """An error naming the failed step; 5xx answers are retryable (``UpstreamUnavailable``)."""
    message = f"Image upload failed at {step}: {secrets_registry.scrub(detail)[:_MESSAGE_LIMIT]}"
    if status >= 500:
        return UpstreamUnavailable(message, code=_ERROR_CODE)
    return UpstreamError(message, code=_ERROR_CODE)


def _in_step(error: ApiError, step: str) -> ApiError:
    """``error`` (status, code, upstream code kept) with the failed step in its message."""
    error.message = f"Image upload failed at {step}: {error.message}"
    error.args = (error.message,)
    return error


def _json(content: bytes) -> Any:
    try:
        return orjson.loads(content)
    except orjson.JSONDecodeError:
        return None
