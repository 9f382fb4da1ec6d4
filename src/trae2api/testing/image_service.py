"""The simulated image pipeline of protocol §8: upload credentials, ImageX and TOS, strictly.

All three live on the simulator's one address (point ``BASE_URL``, ``GET_FILE_ID_URL`` and
``UPLOAD_FILE_URL`` at it); the memory is ``SimState.images`` (``trae2api.testing.image_store``).

``GET <upload_token_path>`` (default ``/api/ide/v1/get_upload_token``, switch
``upload_token_path``): the §3 headers exactly as for the model list (bad token → HTTP 401
``{"code": 1001}``, other header → HTTP 400 ``{"code": 4001, "header"}``) → ``{"data":
{"access_key_id", "secret_access_key", "session_token", "service_id", "expired_time": <epoch s>}}``,
random and living ``upload_credentials_ttl`` seconds (default 3600).

ImageX, ``/?Action=...&Version=2018-08-01&ServiceId=<service_id>``. SigV4 first
(``trae2api.testing.sigv4_verify``; region ``imagex_region``, default ``ap-singapore-1``;
service ``imagex_service``, default ``imagex``); each failure counts ``signature_failures`` and
answers ``{"ResponseMetadata": {..., "Error": {"Code", "Message"}}}`` with

    403 MissingAuthenticationToken  no Authorization header
    403 IncompleteSignature         malformed header or X-Amz-Date; SignedHeaders lacking host,
                                    x-amz-date or x-amz-security-token
    403 InvalidAccessKey            access key never issued
    401 ExpiredToken                credentials past expired_time (or expire_upload_credentials)
    403 RequestTimeTooSkewed        X-Amz-Date over 300 s off the sim's clock
    403 InvalidSecurityToken        X-Amz-Security-Token not the one issued with the key
    403 SignatureDoesNotMatch       wrong scope (date, region, service) or signature

then HTTP 400 ``InvalidAction``, ``InvalidParameter`` (a query key other than Action, Version,
ServiceId, FileSize, FileExtension, UploadNum, or a repeated one; ``Version`` not 2018-08-01),
``InvalidServiceId`` (not the credential's ``service_id``).
``ApplyImageUpload`` must be GET with ``FileSize`` (1..50 MiB) and ``FileExtension`` (``.png``
style) → ``Result.UploadAddress {StoreInfos: [{StoreUri: "tos-sg16-i-<r>/<r><ext>", Auth}],
UploadHosts: ["tos-sg16-share.vodupload.com"], SessionKey}``. ``CommitImageUpload`` must be POST
with ``Content-Type: application/json`` and exactly ``{"SessionKey": str}``; HTTP 400
``InvalidSessionKey`` (unknown, other service, already committed), ``FileNotUploaded`` (no bytes
with a good CRC yet), ``UnsupportedImageFormat`` (not PNG/JPEG/GIF/WebP); ``fail_next_commit``
(count) → HTTP 500 ``InternalError`` leaving the session committable; else ``Result {Results:
[{Uri, UriStatus: 2000}], PluginResult: [{ImageUri, ImageWidth, ImageHeight, ImageMd5,
ImageFormat}]}`` (format lowercase: png, jpeg, gif, webp).

TOS, ``POST /upload/v1/<StoreUri>``: unknown StoreUri → 404 ``{"code": 4004}``; ``Authorization``
not exactly the Auth issued → 403 ``{"code": 4003}``; ``Content-Type`` not
``application/octet-stream`` or ``Content-CRC32`` not 8 lowercase hex → 400 ``{"code": 4000}``;
CRC of the body (or any body while ``corrupt_next_upload`` is pending) wrong → 400 ``{"code": 4002,
"message": "crc32 mismatch"}``; size not the applied FileSize → 400 ``{"code": 4006}``; session
already committed → 409 ``{"code": 4009}``; else ``{"code": 2000, "message": "Success", "data":
{"crc32"}}`` (a re-upload replaces the bytes).
"""

from __future__ import annotations

import re
import secrets
import zlib
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote

import orjson
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from trae2api.testing.admin import json_response
from trae2api.testing.authentication import authenticate_ide
from trae2api.testing.image_store import (
    UPLOAD_HOST,
    CommitRejected,
    ImageStore,
    UploadCredential,
    UploadSession,
)
from trae2api.testing.sigv4_verify import SignatureRejected, SignedRequest, verify
from trae2api.testing.state import SimState

IMAGEX_VERSION = "2018-08-01"
TOS_PREFIX = "/upload/v1/"
MAX_FILE_SIZE = 50 * 1024 * 1024
_QUERY_KEYS = frozenset(
    {"Action", "Version", "ServiceId", "FileSize", "FileExtension", "UploadNum"}
)
_EXTENSION = re.compile(r"\.[a-z0-9]{1,8}")
_CRC = re.compile(r"[0-9a-f]{8}")


class _Refused(Exception):
    """An ImageX business error after the signature checked out."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status


def _metadata(store: ImageStore, action: str) -> dict[str, Any]:
    return {
        "RequestId": secrets.token_hex(16),
        "Action": action,
        "Version": IMAGEX_VERSION,
        "Service": store.imagex_service,
        "Region": store.imagex_region,
    }


def _imagex_error(store: ImageStore, action: str, code: str, message: str, status: int) -> Response:
    meta = _metadata(store, action)
    meta["Error"] = {"Code": code, "Message": message}
    return json_response({"ResponseMetadata": meta}, status)


def _tos_error(code: int, message: str, status: int) -> Response:
    return json_response({"code": code, "message": message}, status)


class _TosRefused(Exception):
    """A TOS upload refused with business ``code`` and HTTP ``status``."""

    def __init__(self, code: int, message: str, status: int = 400) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status


def _pairs(raw: str) -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = []
    for item in raw.split("&"):
        if item:
            key, _, value = item.partition("=")
            pairs.append((unquote(key), unquote(value)))
    return pairs


def _query(raw: str) -> dict[str, str]:
    """The query as a dict; unknown or repeated keys are ``InvalidParameter``."""
    params: dict[str, str] = {}
    for key, value in _pairs(raw):
        if key not in _QUERY_KEYS or key in params:
            raise _Refused("InvalidParameter", f"query parameter {key} is unknown or repeated")
        params[key] = value
    return params


def _file_size(params: Mapping[str, str]) -> int:
    text = params.get("FileSize", "")
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= MAX_FILE_SIZE:
        raise _Refused("InvalidParameter", f"FileSize must be an integer in 1..{MAX_FILE_SIZE}")
    return int(text)


def _session_key(headers: Mapping[str, str], body: bytes) -> str:
    if not headers.get("content-type", "").lower().startswith("application/json"):
        raise _Refused("InvalidParameter", "CommitImageUpload takes application/json")
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise _Refused("InvalidParameter", "the body is not JSON") from exc
    if not isinstance(data, dict) or set(data) != {"SessionKey"}:
        raise _Refused("InvalidParameter", 'the body must be exactly {"SessionKey": "..."}')
    key = data["SessionKey"]
    if not isinstance(key, str) or not key:
        raise _Refused("InvalidParameter", "SessionKey must be a non-empty string")
    return key


def _check_upload(headers: Mapping[str, str], body: bytes, session: UploadSession | None) -> str:
    """The ``Content-CRC32`` of an acceptable TOS upload (before the CRC itself is compared)."""
    if session is None:
        raise _TosRefused(4004, "store uri not found", 404)
    if headers.get("authorization") != session.auth:
        raise _TosRefused(4003, "authorization mismatch", 403)
    if session.committed:
        raise _TosRefused(4009, "already committed", 409)
    if headers.get("content-type") != "application/octet-stream":
        raise _TosRefused(4000, "Content-Type must be application/octet-stream")
    crc = headers.get("content-crc32", "")
    if _CRC.fullmatch(crc) is None:
        raise _TosRefused(4000, "Content-CRC32 must be 8 lowercase hex digits")
    if len(body) != session.file_size:
        raise _TosRefused(4006, f"file size mismatch: {len(body)} != {session.file_size}")
    return crc


class _Images:
    def __init__(self, state: SimState) -> None:
        self.state = state
        self.store = state.images

    async def get_fallback(self, request: Request) -> Response:
        """Every GET no other route took: the upload-token endpoint if the path is its."""
        if request.scope["path"] == self.store.upload_token_path:
            return self.upload_token(request.headers)
        return PlainTextResponse("Not Found", 404)

    def upload_token(self, headers: Mapping[str, str]) -> Response:
        owner = authenticate_ide(self.state, headers)
        if isinstance(owner, Response):
            return owner
        cred = self.store.issue_credential(owner)
        data = {
            "access_key_id": cred.access_key_id,
            "secret_access_key": cred.secret_access_key,
            "session_token": cred.session_token,
            "service_id": cred.service_id,
            "expired_time": int(cred.expires_at),
        }
        return json_response({"data": data})

    async def imagex(self, request: Request) -> Response:
        """ImageX: SigV4, then ApplyImageUpload or CommitImageUpload."""
        body = await request.body()
        raw_query = request.scope["query_string"].decode("latin-1")
        action = dict(_pairs(raw_query)).get("Action", "")
        signed = SignedRequest(
            request.method, request.scope["path"], raw_query, request.headers.items(), body
        )
        store = self.store
        try:
            credential = verify(
                signed,
                store.credential,
                region=store.imagex_region,
                service=store.imagex_service,
                now=store.now(),
            )
            return self._act(request.method, raw_query, request.headers, body, credential)
        except SignatureRejected as exc:
            store.count("signature_failures")
            return _imagex_error(store, action, exc.code, exc.message, exc.status)
        except _Refused as exc:
            return _imagex_error(store, action, exc.code, exc.message, exc.status)

    def _act(
        self,
        method: str,
        raw_query: str,
        headers: Mapping[str, str],
        body: bytes,
        credential: UploadCredential,
    ) -> Response:
        params = _query(raw_query)
        action = params.get("Action")
        if action not in ("ApplyImageUpload", "CommitImageUpload"):
            raise _Refused("InvalidAction", f"Action {action} is not supported")
        if params.get("Version") != IMAGEX_VERSION:
            raise _Refused("InvalidParameter", f"Version must be {IMAGEX_VERSION}")
        if params.get("ServiceId") != credential.service_id:
            raise _Refused("InvalidServiceId", f"ServiceId {params.get('ServiceId')} is not yours")
        if action == "ApplyImageUpload":
            return self._apply(method, params, credential)
        return self._commit(method, headers, body, credential)

    def _apply(
        self, method: str, params: Mapping[str, str], credential: UploadCredential
    ) -> Response:
        if method != "GET":
            raise _Refused("InvalidParameter", "ApplyImageUpload is a GET request")
        size = _file_size(params)
        extension = params.get("FileExtension", "")
        if _EXTENSION.fullmatch(extension) is None:
            raise _Refused("InvalidParameter", "FileExtension must look like .png")
        if params.get("UploadNum", "1") != "1":
            raise _Refused("InvalidParameter", "UploadNum must be 1")
        session = self.store.apply(credential, size, extension)
        address = {
            "StoreInfos": [{"StoreUri": session.store_uri, "Auth": session.auth}],
            "UploadHosts": [UPLOAD_HOST],
            "SessionKey": session.session_key,
        }
        meta = _metadata(self.store, "ApplyImageUpload")
        return json_response({"ResponseMetadata": meta, "Result": {"UploadAddress": address}})

    def _commit(
        self,
        method: str,
        headers: Mapping[str, str],
        body: bytes,
        credential: UploadCredential,
    ) -> Response:
        if method != "POST":
            raise _Refused("InvalidParameter", "CommitImageUpload is a POST request")
        try:
            image = self.store.commit(_session_key(headers, body), credential.service_id)
        except CommitRejected as exc:
            raise _Refused(exc.code, exc.message, exc.status) from exc
        plugin = {
            "ImageUri": image.uri,
            "ImageWidth": image.info.width,
            "ImageHeight": image.info.height,
            "ImageMd5": image.md5,
            "ImageFormat": image.info.format,
        }
        result = {"Results": [{"Uri": image.uri, "UriStatus": 2000}], "PluginResult": [plugin]}
        meta = _metadata(self.store, "CommitImageUpload")
        return json_response({"ResponseMetadata": meta, "Result": result})

    async def tos(self, request: Request) -> Response:
        """TOS: the bytes of one upload session, checked against its Auth, size and CRC."""
        body = await request.body()
        session = self.store.session_for_store_uri(request.path_params["store_uri"])
        try:
            crc = _check_upload(request.headers, body, session)
            received = body
            if self.store.take_corruption():
                received = bytes([body[0] ^ 0xFF]) + body[1:] if body else b"\x00"
            actual = f"{zlib.crc32(received):08x}"
            if actual != crc:
                raise _TosRefused(4002, "crc32 mismatch")
        except _TosRefused as exc:
            self.store.count("tos_rejections")
            return _tos_error(exc.code, exc.message, exc.status)
        if session is not None:  # always: _check_upload refused a missing one
            self.store.store_bytes(session.session_key, received)
        return json_response({"code": 2000, "message": "Success", "data": {"crc32": actual}})


def image_routes(state: SimState) -> list[Route]:
    """ImageX at ``/``, TOS under ``/upload/v1/``, and a catch-all GET serving the configurable
    upload-token path: these routes must come after every other route of the app."""
    images = _Images(state)
    return [
        Route("/", images.imagex, methods=["GET", "POST"]),
        Route(TOS_PREFIX + "{store_uri:path}", images.tos, methods=["POST"]),
        Route("/{path:path}", images.get_fallback, methods=["GET"]),
    ]
