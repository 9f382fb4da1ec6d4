"""One rotation of the refresh token (protocol §2): present it, then store the answer durably.

Owns that step, and the detached process that lets it outlive the gateway. It must not decide
when to rotate or wait for the lock (``auth.manager``), nor speak HTTP (the exchanger does).

Why a process of its own: Trae burns the presented refresh token when the request arrives. If
the gateway dies (SIGKILL, OOM killer, crash) before the answer is stored, the only copy of the
account's access is gone. ``DetachedRotator`` runs the step in a child in a session of its own
(``python -m trae2api.process.rotator``) that ignores termination signals, so it finishes the
durable write whatever happens to its parent. The wire format is one JSON request on the child's
stdin and one JSON reply on its stdout; the codec below is pure and table-tested.
"""

from __future__ import annotations

import asyncio
import dataclasses
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import orjson

from trae2api.auth.credentials import Credentials, ExchangeResult
from trae2api.auth.store import CredentialStore
from trae2api.errors import ReauthRequired, UpstreamUnavailable

WIRE_VERSION = 1
ROTATOR_COMMAND = (sys.executable, "-m", "trae2api.process.rotator")

Outcome = Literal["stored", "lost_race", "unsaved"]


class Exchanger(Protocol):
    """Anything that performs the protocol §2 exchange (``upstream.exchange.TokenExchanger``)."""

    async def exchange(self, refresh_token: str) -> ExchangeResult: ...


class Rotator(Protocol):
    """Presents ``current.refresh_token`` once and stores what Trae answers.

    Raises ``ReauthRequired`` when Trae refused the token, and another error when nothing was
    stored (the token may or may not have been presented); returns otherwise. ``lock_owner``
    names the caller's held refresh lock: a rotator that can outlive its caller renews it.
    """

    async def rotate(self, current: Credentials, lock_owner: str) -> Rotation: ...


@dataclass(frozen=True)
class Rotation:
    """How a rotation that got an answer from Trae ended.

    ``stored``: ``credentials`` are durable. ``lost_race``: the store had moved past
    ``current.version``, so nothing was written. ``unsaved``: the write failed and
    ``credentials`` exist only in memory; ``error`` says why.
    """

    outcome: Outcome
    credentials: Credentials | None = None
    error: str | None = None
    persist_ms: float | None = None


class InlineRotator:
    """Exchange and store in this process: for tests, and the body of the rotation process."""

    def __init__(self, exchanger: Exchanger, store: CredentialStore) -> None:
        self._exchanger = exchanger
        self._store = store

    async def rotate(self, current: Credentials, lock_owner: str) -> Rotation:
        # ``lock_owner`` is not needed here: in this process the caller's RefreshLock renews it.
        result = await self._exchanger.exchange(current.refresh_token)
        # From here until compare_and_set returns, the rotated token exists only in this
        # process (protocol §2): nothing may come between the response and the durable write.
        received = time.monotonic()
        new = current.after_exchange(result)
        try:
            won = await self._store.compare_and_set(current.version, new)
        except Exception as exc:
            return Rotation("unsaved", new, error=str(exc) or type(exc).__name__)
        if not won:
            return Rotation("lost_race")
        return Rotation("stored", new, persist_ms=round((time.monotonic() - received) * 1000, 2))


@dataclass(frozen=True)
class RotationSetup:
    """Where the rotation process finds the store and Trae's exchange, and how it logs."""

    store: Literal["sqlite", "redis"]
    exchange_url: str
    client_id: str
    user_id: str
    sqlite_path: str = ""
    redis_url: str = field(default="", repr=False)  # may carry a password
    redis_prefix: str = ""
    connect_timeout: float = 10.0
    read_timeout: float = 120.0
    lock_ttl: float = 10.0
    log_level: str = "INFO"
    log_format: str = "auto"


@dataclass(frozen=True)
class RotationRequest:
    """Everything the rotation process reads from its stdin."""

    setup: RotationSetup
    current: Credentials
    lock_owner: str


def encode_request(request: RotationRequest) -> bytes:
    return orjson.dumps(
        {
            "wire": WIRE_VERSION,
            "setup": dataclasses.asdict(request.setup),
            "current": dataclasses.asdict(request.current),
            "lock_owner": request.lock_owner,
        }
    )


def decode_request(data: bytes) -> RotationRequest:
    """The request, or ``ValueError`` naming what is wrong (never echoing a credential)."""
    try:
        doc = orjson.loads(data)
        if doc["wire"] != WIRE_VERSION:
            raise ValueError(f"wire version {doc['wire']!r}, expected {WIRE_VERSION}")
        return RotationRequest(
            setup=RotationSetup(**doc["setup"]),
            current=Credentials(**doc["current"]),
            lock_owner=str(doc["lock_owner"]),
        )
    except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
        raise ValueError(f"not a rotation request ({type(exc).__name__})") from None


def encode_reply(outcome: Rotation | BaseException) -> bytes:
    """A finished rotation, or the error that ended it, as the child's stdout."""
    if isinstance(outcome, Rotation):
        creds = outcome.credentials
        return orjson.dumps(
            {
                "outcome": outcome.outcome,
                "credentials": dataclasses.asdict(creds) if creds is not None else None,
                "error": outcome.error,
                "persist_ms": outcome.persist_ms,
            }
        )
    if isinstance(outcome, ReauthRequired):
        return orjson.dumps({"outcome": "rejected", "error": outcome.message})
    if isinstance(outcome, UpstreamUnavailable):
        return orjson.dumps(
            {
                "outcome": "unavailable",
                "error": outcome.message,
                "status": outcome.status,
                "code": outcome.code,
            }
        )
    error = f"the rotation failed ({type(outcome).__name__}: {outcome})"
    return orjson.dumps({"outcome": "unavailable", "error": error})


def decode_reply(data: bytes, exit_code: int | None) -> Rotation:
    """The child's answer as a ``Rotation``, or the error it reported, raised here."""
    try:
        doc: dict[str, Any] = orjson.loads(data)
        outcome = doc["outcome"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        # No answer: the child died or could not start. Whether it presented the token is
        # unknown; the manager re-reads the store before any further exchange.
        raise UpstreamUnavailable(
            f"the credential rotation process ended without an answer (exit code {exit_code})"
        ) from None
    if outcome == "rejected":
        raise ReauthRequired(str(doc.get("error")))
    if outcome in ("stored", "lost_race", "unsaved"):
        creds = doc.get("credentials")
        return Rotation(
            outcome,
            Credentials(**creds) if isinstance(creds, dict) else None,
            error=doc.get("error"),
            persist_ms=doc.get("persist_ms"),
        )
    status, code = doc.get("status"), doc.get("code")
    raise UpstreamUnavailable(
        str(doc.get("error") or "the credential rotation failed"),
        status=status if isinstance(status, int) and 500 <= status < 600 else None,
        code=code if isinstance(code, str) else None,
    )


class DetachedRotator:
    """Runs each rotation in ``python -m trae2api.process.rotator``, which outlives this process."""

    def __init__(self, setup: RotationSetup, *, command: Sequence[str] = ROTATOR_COMMAND) -> None:
        self._setup = setup
        self._command = list(command)

    async def rotate(self, current: Credentials, lock_owner: str) -> Rotation:
        request = encode_request(RotationRequest(self._setup, current, lock_owner))
        # A thread, not asyncio's subprocess support: asyncio kills a child whose transport is
        # closed (a cancelled wait, loop shutdown), which is the very death this must survive.
        data, exit_code = await asyncio.to_thread(self._run, request)
        return decode_reply(data, exit_code)

    def _run(self, request: bytes) -> tuple[bytes, int | None]:
        try:
            child = subprocess.Popen(  # noqa: S603 (our own interpreter and module)
                self._command,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                start_new_session=True,  # not in the gateway's process group: killpg spares it
            )
        except OSError as exc:
            raise UpstreamUnavailable(
                f"the credential rotation process could not start ({exc.strerror})"
            ) from None
        data, _ = child.communicate(request)
        return data, child.returncode
