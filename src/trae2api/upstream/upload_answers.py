"""The answers of protocol §8's upload steps: shapes, parsing, checks and the errors naming a step.

Pure: it must not do I/O, log or register secrets (``upstream.imagex`` does, with what this
returns); its error messages never carry keys, tokens or Auth.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

from trae2api.errors import (
    ApiError,
    CredentialsExpired,
    UpstreamError,
    UpstreamUnavailable,
    from_business_code,
)
from trae2api.log import secrets_registry
from trae2api.upstream.client import business_code, http_error
from trae2api.wire.images import ImageData

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
class UploadAddress:
    """Step 2's answer: where the bytes go and how to commit them."""

    store_uri: str
    auth: str = field(repr=False)
    session_key: str = field(repr=False)


# -- step 1: Trae's upload credentials ------------------------------------------------------------


def credentials_answer(
    status: int, content: bytes, headers: httpx.Headers, *, path: str
) -> UploadCredentials:
    """Step 1's answer from the endpoint at ``path`` as credentials, or the error naming step 1."""
    payload = _json(content)
    if status == 404:
        raise failure(
            STEP_CREDENTIALS,
            f"Trae has no upload-credential endpoint at {path}"
            " (this path is not publicly documented; UPLOAD_TOKEN_PATH sets it)",
        )
    if status != 200:
        raise in_step(http_error(status, content, headers), STEP_CREDENTIALS)
    found = business_code(payload)
    if found is not None:
        raise in_step(from_business_code(*found), STEP_CREDENTIALS)
    credentials = parse_credentials(payload)
    if credentials is None:
        raise failure(STEP_CREDENTIALS, "Trae's answer had no usable upload credentials")
    return credentials


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


# -- steps 2 and 4: ImageX ------------------------------------------------------------------------


def imagex_result(status: int, content: bytes, step: str) -> dict[str, Any]:
    """An ImageX answer's ``Result``; raises ``CredentialsExpired`` or an error naming ``step``."""
    payload = _json(content)
    error = _imagex_error(payload)
    if error is not None:
        code, message = error
        refused = failure(step, f"ImageX error {code}: {message}", status=status)
        if code in _EXPIRED_CODES:
            raise CredentialsExpired(refused)
        raise refused
    if status != 200:
        raise failure(step, f"ImageX answered HTTP {status}", status=status)
    result = payload.get("Result") if isinstance(payload, dict) else None
    if not isinstance(result, dict):
        raise failure(step, "ImageX answered without a Result")
    return result


def _imagex_error(payload: Any) -> tuple[str, str] | None:
    """``ResponseMetadata.Error``'s code and message, if the answer carries one."""
    meta = payload.get("ResponseMetadata") if isinstance(payload, dict) else None
    error = meta.get("Error") if isinstance(meta, dict) else None
    if not isinstance(error, dict) or not error.get("Code"):
        return None
    return str(error["Code"]), str(error.get("Message") or "")


def upload_address(result: dict[str, Any]) -> UploadAddress:
    """Step 2's ``Result.UploadAddress``: the first ``StoreInfos`` entry and the ``SessionKey``."""
    address = result.get("UploadAddress")
    address = address if isinstance(address, dict) else {}
    infos = address.get("StoreInfos")
    first = infos[0] if isinstance(infos, list) and infos and isinstance(infos[0], dict) else {}
    store_uri, auth = first.get("StoreUri"), first.get("Auth")
    session_key = address.get("SessionKey")
    if not all(isinstance(value, str) and value for value in (store_uri, auth, session_key)):
        raise failure(STEP_APPLY, "ImageX answered without StoreInfos[0] and SessionKey")
    return UploadAddress(str(store_uri), str(auth), str(session_key))


def upload_hosts(result: dict[str, Any]) -> Any:
    """Step 2's ``UploadHosts`` (protocol §8: only logged; the configured TOS base is used)."""
    address = result.get("UploadAddress")
    return address.get("UploadHosts") if isinstance(address, dict) else None


def committed(result: dict[str, Any], address: UploadAddress, image: ImageData) -> UploadedImage:
    """Step 4's ``Result`` as the committed image; ``image`` (what was sent) fills in the width,
    height and format ImageX leaves out."""
    results, plugins = result.get("Results"), result.get("PluginResult")
    first = results[0] if isinstance(results, list) and results else None
    status = first.get("UriStatus") if isinstance(first, dict) else None
    if str(status) != str(_SUCCESS):
        raise failure(STEP_COMMIT, f"ImageX committed {address.store_uri} with UriStatus {status}")
    plugin = plugins[0] if isinstance(plugins, list) and plugins else None
    if not isinstance(plugin, dict) or not plugin.get("ImageUri"):
        raise failure(STEP_COMMIT, "ImageX answered without PluginResult[0].ImageUri")
    try:
        return UploadedImage(
            uri=str(plugin["ImageUri"]),
            width=int(plugin.get("ImageWidth") or image.width),
            height=int(plugin.get("ImageHeight") or image.height),
            format=str(plugin.get("ImageFormat") or image.format).lower(),
            md5=str(plugin.get("ImageMd5") or ""),
        )
    except (TypeError, ValueError):
        raise failure(STEP_COMMIT, "ImageX described the image with malformed fields") from None


# -- step 3: TOS ----------------------------------------------------------------------------------


def check_tos(status: int, content: bytes, crc: str) -> None:
    """Raise unless TOS stored the bytes: code 2000 and, if echoed, the CRC32 that was sent."""
    payload = _json(content)
    code = business_code(payload)
    if code is not None and code[0] != _SUCCESS:
        raise failure(STEP_UPLOAD, f"TOS error {code[0]}: {code[1]}", status=status)
    if status != 200 or code is None:
        raise failure(STEP_UPLOAD, f"TOS answered HTTP {status} without code 2000", status=status)
    data = payload.get("data")
    echoed = data.get("crc32") if isinstance(data, dict) else None
    if echoed is not None and str(echoed).lower().rjust(8, "0") != crc and echoed != int(crc, 16):
        raise failure(STEP_UPLOAD, f"TOS stored CRC32 {echoed!s:.16}, not {crc}")


# -- errors ---------------------------------------------------------------------------------------


def failure(step: str, detail: str, *, status: int = 200) -> UpstreamError:
    """An error naming the failed step; 5xx answers are retryable (``UpstreamUnavailable``)."""
    message = f"Image upload failed at {step}: {secrets_registry.scrub(detail)[:_MESSAGE_LIMIT]}"
    if status >= 500:
        return UpstreamUnavailable(message, code=_ERROR_CODE)
    return UpstreamError(message, code=_ERROR_CODE)


def in_step(error: ApiError, step: str) -> ApiError:
    """``error`` (status, code, upstream code kept) with the failed step in its message."""
    error.message = f"Image upload failed at {step}: {error.message}"
    error.args = (error.message,)
    return error


def _json(content: bytes) -> Any:
    try:
        return orjson.loads(content)
    except orjson.JSONDecodeError:
        return None
