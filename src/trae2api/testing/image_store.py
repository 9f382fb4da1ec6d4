"""The simulated image pipeline's memory (protocol §8): upload credentials, ImageX upload
sessions, the bytes TOS received, committed images, the image switches and counters.

Owned by ``SimState`` (as ``state.images``) and thread-safe behind its own lock; it must not do
I/O or know about HTTP. The rules of each endpoint live in ``trae2api.testing.image_service``.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from trae2api.testing.image_info import ImageInfo, image_info

DEFAULT_UPLOAD_TOKEN_PATH = "/api/ide/v1/get_upload_token"  # noqa: S105 - a path
DEFAULT_CREDENTIALS_TTL = 3600.0
DEFAULT_REGION = "ap-singapore-1"
DEFAULT_SERVICE = "imagex"
DEFAULT_SERVICE_ID = "b2sim7imagex"
UPLOAD_HOST = "tos-sg16-share.vodupload.com"
IMAGE_COUNTERS = (
    "upload_tokens_issued",
    "imagex_apply",
    "imagex_commit",
    "tos_uploads",
    "tos_rejections",
    "signature_failures",
    "images_committed",
)
IMAGE_CONFIG_KEYS = frozenset(
    {
        "upload_credentials_ttl",
        "fail_next_commit",
        "corrupt_next_upload",
        "imagex_region",
        "imagex_service",
        "imagex_service_id",
        "upload_token_path",
    }
)


class CommitRejected(Exception):
    """ImageX refuses a commit: ``code``/``message`` for ``ResponseMetadata.Error``."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status


@dataclass(frozen=True)
class UploadCredential:
    """One ``get_upload_token`` answer, remembered (``expires_at`` in epoch seconds)."""

    access_key_id: str
    secret_access_key: str
    session_token: str
    service_id: str
    expires_at: float
    owner: str


@dataclass(frozen=True)
class UploadSession:
    """One ApplyImageUpload: where the bytes go and what TOS has received so far."""

    session_key: str
    store_uri: str
    auth: str
    file_size: int
    service_id: str
    owner: str
    data: bytes | None = None
    committed: bool = False


@dataclass(frozen=True)
class CommittedImage:
    """An image ImageX committed: its ``ImageUri`` (= StoreUri) and what its bytes are."""

    uri: str
    owner: str
    info: ImageInfo
    md5: str
    sha256: str
    size: int
    data: bytes


def _token(size: int) -> str:
    return base64.b64encode(secrets.token_bytes(size)).decode()


class ImageStore:
    """Everything the image endpoints remember; every method is thread-safe."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self._counters = dict.fromkeys(IMAGE_COUNTERS, 0)
        self.reset()

    def reset(self) -> None:
        """Forget credentials, sessions, images, switches and counters."""
        with self._lock:
            self.upload_credentials_ttl = DEFAULT_CREDENTIALS_TTL
            self.imagex_region = DEFAULT_REGION
            self.imagex_service = DEFAULT_SERVICE
            self.imagex_service_id = DEFAULT_SERVICE_ID
            self.upload_token_path = DEFAULT_UPLOAD_TOKEN_PATH
            self._fail_next_commit = 0
            self._corrupt_next_upload = 0
            self._credentials: dict[str, UploadCredential] = {}
            self._sessions: dict[str, UploadSession] = {}
            self._by_store_uri: dict[str, str] = {}
            self._images: dict[str, CommittedImage] = {}
            self._counters = dict.fromkeys(IMAGE_COUNTERS, 0)

    def configure(self, changes: Mapping[str, Any]) -> None:
        """Apply the image switches (keys of ``IMAGE_CONFIG_KEYS``); a count given as ``true``
        means 1. Checks every value before changing anything."""
        checked = {key: _checked(key, value) for key, value in changes.items()}
        with self._lock:
            for key, value in checked.items():
                if key in ("fail_next_commit", "corrupt_next_upload"):
                    setattr(self, f"_{key}", value)
                else:
                    setattr(self, key, value)

    def now(self) -> float:
        return self._clock()

    # -- credentials ---------------------------------------------------------------------------

    def issue_credential(self, owner: str) -> UploadCredential:
        """Random short-lived credentials for ``owner``, remembered for verification."""
        with self._lock:
            credential = UploadCredential(
                access_key_id="AKTP" + secrets.token_hex(16).upper(),
                secret_access_key=_token(30),
                session_token="STS2" + _token(96),
                service_id=self.imagex_service_id,
                expires_at=self._clock() + self.upload_credentials_ttl,
                owner=owner,
            )
            self._credentials[credential.access_key_id] = credential
            self._counters["upload_tokens_issued"] += 1
            return credential

    def credential(self, access_key_id: str) -> UploadCredential | None:
        with self._lock:
            return self._credentials.get(access_key_id)

    def issued_credentials(self) -> list[UploadCredential]:
        """Every upload credential issued since the last reset (for secret-hygiene tests)."""
        with self._lock:
            return list(self._credentials.values())

    def expire_credentials(self) -> None:
        """Every upload credential issued so far expires now."""
        with self._lock:
            now = self._clock()
            self._credentials = {
                key: replace(cred, expires_at=min(cred.expires_at, now))
                for key, cred in self._credentials.items()
            }

    # -- sessions and bytes --------------------------------------------------------------------

    def apply(self, credential: UploadCredential, file_size: int, extension: str) -> UploadSession:
        """A new upload session with a random StoreUri, Auth and SessionKey."""
        store_uri = f"tos-sg16-i-{secrets.token_hex(5)}/{secrets.token_hex(16)}{extension}"
        auth = f"SpaceKey/{credential.service_id}/1/:version:v2:{secrets.token_urlsafe(48)}"
        session = UploadSession(
            session_key=secrets.token_urlsafe(40),
            store_uri=store_uri,
            auth=auth,
            file_size=file_size,
            service_id=credential.service_id,
            owner=credential.owner,
        )
        with self._lock:
            self._sessions[session.session_key] = session
            self._by_store_uri[store_uri] = session.session_key
            self._counters["imagex_apply"] += 1
        return session

    def session_for_store_uri(self, store_uri: str) -> UploadSession | None:
        with self._lock:
            key = self._by_store_uri.get(store_uri)
            return None if key is None else self._sessions[key]

    def store_bytes(self, session_key: str, data: bytes) -> None:
        """Keep bytes TOS accepted (a later upload to the same StoreUri replaces them)."""
        with self._lock:
            session = self._sessions[session_key]
            self._sessions[session_key] = replace(session, data=data)
            self._counters["tos_uploads"] += 1

    def take_corruption(self) -> bool:
        """Whether this upload must be treated as corrupted (consumes ``corrupt_next_upload``)."""
        with self._lock:
            if self._corrupt_next_upload <= 0:
                return False
            self._corrupt_next_upload -= 1
            return True

    def commit(self, session_key: str, service_id: str) -> CommittedImage:
        """Commit the session's bytes as an image, or raise ``CommitRejected``."""
        with self._lock:
            self._counters["imagex_commit"] += 1
            session = self._sessions.get(session_key)
            if session is None or session.service_id != service_id:
                raise CommitRejected("InvalidSessionKey", "SessionKey is unknown")
            if session.committed:
                raise CommitRejected("InvalidSessionKey", "SessionKey was already committed")
            if session.data is None:
                raise CommitRejected("FileNotUploaded", f"nothing uploaded to {session.store_uri}")
            if self._fail_next_commit > 0:
                self._fail_next_commit -= 1
                raise CommitRejected("InternalError", "simulated commit failure", 500)
            image = _committed(session, session.data)
            self._sessions[session_key] = replace(session, committed=True)
            self._images[image.uri] = image
            self._counters["images_committed"] += 1
            return image

    def image(self, uri: str) -> CommittedImage | None:
        with self._lock:
            return self._images.get(uri)

    def images(self) -> list[dict[str, Any]]:
        """The committed images (without their bytes), oldest first."""
        with self._lock:
            return [_image_summary(image) for image in self._images.values()]

    # -- counters ------------------------------------------------------------------------------

    def count(self, name: str, amount: int = 1) -> None:
        with self._lock:
            self._counters[name] += amount

    def reset_counters(self) -> None:
        with self._lock:
            self._counters = dict.fromkeys(IMAGE_COUNTERS, 0)

    def stats(self) -> dict[str, Any]:
        """Image counters and switches, to merge into ``SimState.stats()``."""
        with self._lock:
            now = self._clock()
            return {
                **self._counters,
                "valid_upload_credentials": sum(
                    1 for cred in self._credentials.values() if now < cred.expires_at
                ),
                "upload_credentials_ttl": self.upload_credentials_ttl,
                "fail_next_commit": self._fail_next_commit,
                "corrupt_next_upload": self._corrupt_next_upload,
                "imagex_region": self.imagex_region,
                "imagex_service": self.imagex_service,
                "imagex_service_id": self.imagex_service_id,
                "upload_token_path": self.upload_token_path,
            }


def _committed(session: UploadSession, data: bytes) -> CommittedImage:
    try:
        info = image_info(data)
    except ValueError as exc:
        raise CommitRejected("UnsupportedImageFormat", str(exc)) from exc
    return CommittedImage(
        uri=session.store_uri,
        owner=session.owner,
        info=info,
        md5=hashlib.md5(data).hexdigest(),  # noqa: S324 - ImageMd5 is what ImageX reports
        sha256=hashlib.sha256(data).hexdigest(),
        size=len(data),
        data=data,
    )


def _image_summary(image: CommittedImage) -> dict[str, Any]:
    return {
        "uri": image.uri,
        "width": image.info.width,
        "height": image.info.height,
        "format": image.info.format,
        "md5": image.md5,
        "sha256": image.sha256,
        "size": image.size,
    }


def _checked(key: str, value: Any) -> Any:
    """The value of one image switch, converted, or ValueError."""
    if key not in IMAGE_CONFIG_KEYS:
        raise ValueError(f"unknown image configuration key {key}")
    if key in ("fail_next_commit", "corrupt_next_upload"):
        count = int(value)
        if count < 0:
            raise ValueError(f"{key} must be >= 0")
        return count
    if key == "upload_credentials_ttl":
        return float(value)
    if not isinstance(value, str) or not value:
        raise ValueError(f"{key} must be a non-empty string")
    if key == "upload_token_path" and not value.startswith("/"):
        raise ValueError("upload_token_path must start with /")
    return value
