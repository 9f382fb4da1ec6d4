"""Strict AWS Signature V4 verification for the simulated ImageX (protocol §8).

An implementation of its own, written from the AWS specification and never sharing code with the
gateway's signer, so that a bug there shows up as ``SignatureDoesNotMatch`` here. It recomputes
the canonical request from what actually arrived (method, path, the raw query re-encoded, the
headers named in ``SignedHeaders``, the SHA-256 of the received body). Pure: no state, no I/O.
"""

from __future__ import annotations

import calendar
import hashlib
import hmac
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar
from urllib.parse import quote, unquote

ALGORITHM = "AWS4-HMAC-SHA256"
TERMINATOR = "aws4_request"
REQUIRED_SIGNED = ("host", "x-amz-date", "x-amz-security-token")
MAX_SKEW = 300.0
_SCOPE_PARTS = ("date", "region", "service", "terminator")
_AMZ_DATE = re.compile(r"[0-9]{8}T[0-9]{6}Z")
_SPACES = re.compile(r" +")
_AUTH_PART = re.compile(r"\s*(Credential|SignedHeaders|Signature)=([^,\s]*)\s*")


class SignatureRejected(Exception):
    """ImageX refuses the request: ``code`` goes into ``ResponseMetadata.Error``."""

    def __init__(self, code: str, message: str, status: int = 403) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status


class IssuedCredential(Protocol):
    """What the verifier needs of credentials the simulator handed out."""

    @property
    def secret_access_key(self) -> str: ...

    @property
    def session_token(self) -> str: ...

    @property
    def expires_at(self) -> float: ...


CredentialT = TypeVar("CredentialT", bound=IssuedCredential)


@dataclass(frozen=True)
class SignedRequest:
    """A request as received: header names lowercase, repeated headers repeated."""

    method: str
    path: str
    raw_query: str
    headers: Sequence[tuple[str, str]]
    body: bytes


@dataclass(frozen=True)
class Authorization:
    """A parsed ``Authorization: AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., ...``."""

    access_key: str
    date: str
    region: str
    service: str
    terminator: str
    signed_headers: tuple[str, ...]
    signature: str


def uri_encode(text: str) -> str:
    """RFC 3986 percent-encoding: everything but ``A-Z a-z 0-9 - _ . ~``, UTF-8, uppercase hex."""
    return quote(text, safe="-_.~")


def canonical_query(raw_query: str) -> str:
    """The raw query decoded (``%XX`` only; ``+`` stays a plus), re-encoded and sorted."""
    pairs: list[tuple[str, str]] = []
    for item in raw_query.split("&"):
        if not item:
            continue
        key, _, value = item.partition("=")
        pairs.append((uri_encode(unquote(key)), uri_encode(unquote(value))))
    return "&".join(f"{key}={value}" for key, value in sorted(pairs))


def canonical_headers(headers: Sequence[tuple[str, str]], signed: Sequence[str]) -> str:
    """``name:value\\n`` for each signed header (values trimmed, inner runs of spaces collapsed,
    repeats joined by commas); a signed header that did not arrive is a mismatch."""
    lines: list[str] = []
    for name in signed:
        values = [_SPACES.sub(" ", v.strip()) for k, v in headers if k.lower() == name]
        if not values:
            raise SignatureRejected("SignatureDoesNotMatch", f"signed header {name} is absent")
        lines.append(f"{name}:{','.join(values)}\n")
    return "".join(lines)


def canonical_request(
    method: str,
    path: str,
    raw_query: str,
    headers: Sequence[tuple[str, str]],
    signed: Sequence[str],
    payload_hash: str,
) -> str:
    """The SigV4 canonical request (the decoded ``path`` is encoded once, ``/`` kept)."""
    return "\n".join(
        [
            method.upper(),
            quote(path or "/", safe="/-_.~"),
            canonical_query(raw_query),
            canonical_headers(headers, signed),
            ";".join(signed),
            payload_hash,
        ]
    )


def string_to_sign(amz_date: str, scope: str, canonical: str) -> str:
    digest = hashlib.sha256(canonical.encode()).hexdigest()
    return f"{ALGORITHM}\n{amz_date}\n{scope}\n{digest}"


def signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    key = f"AWS4{secret}".encode()
    for part in (date, region, service, TERMINATOR):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def compute_signature(secret: str, amz_date: str, region: str, service: str, canonical: str) -> str:
    """The hex signature of ``canonical`` for this secret, time, region and service."""
    date = amz_date[:8]
    scope = f"{date}/{region}/{service}/{TERMINATOR}"
    key = signing_key(secret, date, region, service)
    text = string_to_sign(amz_date, scope, canonical)
    return hmac.new(key, text.encode(), hashlib.sha256).hexdigest()


def parse_authorization(value: str | None) -> Authorization:
    """The parts of an ``Authorization`` header, or ``MissingAuthenticationToken`` /
    ``IncompleteSignature`` when it is absent or malformed."""
    if not value:
        raise SignatureRejected("MissingAuthenticationToken", "Authorization header is missing")
    algorithm, _, rest = value.strip().partition(" ")
    if algorithm != ALGORITHM:
        raise SignatureRejected("IncompleteSignature", f"algorithm must be {ALGORITHM}")
    parts: dict[str, str] = {}
    for item in rest.split(","):
        match = _AUTH_PART.fullmatch(item)
        if match is None or match.group(1) in parts:
            raise SignatureRejected("IncompleteSignature", f"malformed element {item.strip()!r}")
        parts[match.group(1)] = match.group(2)
    if set(parts) != {"Credential", "SignedHeaders", "Signature"}:
        raise SignatureRejected("IncompleteSignature", "need Credential, SignedHeaders, Signature")
    credential = parts["Credential"].split("/")
    if len(credential) != 5 or not all(credential):
        raise SignatureRejected("IncompleteSignature", "Credential is <ak>/<date>/<region>/...")
    signed = tuple(parts["SignedHeaders"].split(";"))
    key, date, region, service, terminator = credential
    return Authorization(key, date, region, service, terminator, signed, parts["Signature"])


def _check_signed_list(signed: tuple[str, ...]) -> None:
    if list(signed) != sorted(set(signed)) or any(name != name.lower() for name in signed):
        raise SignatureRejected(
            "SignatureDoesNotMatch", "SignedHeaders must be lowercase, sorted, unique"
        )
    missing = [name for name in REQUIRED_SIGNED if name not in signed]
    if missing:
        raise SignatureRejected("IncompleteSignature", f"SignedHeaders must include {missing[0]}")


def amz_time(value: str | None) -> float:
    """Epoch seconds of an ``X-Amz-Date`` (``YYYYMMDDTHHMMSSZ``) or ``IncompleteSignature``."""
    if value is None or _AMZ_DATE.fullmatch(value) is None:
        raise SignatureRejected("IncompleteSignature", "X-Amz-Date must be YYYYMMDDTHHMMSSZ")
    try:
        return float(calendar.timegm(time.strptime(value, "%Y%m%dT%H%M%SZ")))
    except ValueError as exc:
        raise SignatureRejected("IncompleteSignature", "X-Amz-Date is not a date") from exc


def _header(request: SignedRequest, name: str) -> str | None:
    return next((value for key, value in request.headers if key.lower() == name), None)


def _check_scope(auth: Authorization, amz_date: str, region: str, service: str) -> None:
    wanted = (amz_date[:8], region, service, TERMINATOR)
    given = (auth.date, auth.region, auth.service, auth.terminator)
    for label, want, got in zip(_SCOPE_PARTS, wanted, given, strict=True):
        if want != got:
            message = f"credential scope {label} {got!r} should be {want!r}"
            raise SignatureRejected("SignatureDoesNotMatch", message)


def verify(
    request: SignedRequest,
    lookup: Callable[[str], CredentialT | None],
    *,
    region: str,
    service: str,
    now: float,
) -> CredentialT:
    """The credential whose key validly signed ``request``, else ``SignatureRejected`` with, in
    order: MissingAuthenticationToken/IncompleteSignature, InvalidAccessKey, ExpiredToken (401),
    RequestTimeTooSkewed, InvalidSecurityToken, SignatureDoesNotMatch (all others 403)."""
    auth = parse_authorization(_header(request, "authorization"))
    _check_signed_list(auth.signed_headers)
    credential = lookup(auth.access_key)
    if credential is None:
        raise SignatureRejected("InvalidAccessKey", f"access key {auth.access_key} is unknown")
    if now >= credential.expires_at:
        raise SignatureRejected("ExpiredToken", "the security token has expired", 401)
    amz_date = _header(request, "x-amz-date") or ""
    if abs(now - amz_time(amz_date)) > MAX_SKEW:
        raise SignatureRejected("RequestTimeTooSkewed", f"X-Amz-Date {amz_date} is over 5 min off")
    if _header(request, "x-amz-security-token") != credential.session_token:
        raise SignatureRejected("InvalidSecurityToken", "X-Amz-Security-Token is not this key's")
    _check_scope(auth, amz_date, region, service)
    payload_hash = hashlib.sha256(request.body).hexdigest()
    canonical = canonical_request(
        request.method,
        request.path,
        request.raw_query,
        request.headers,
        auth.signed_headers,
        payload_hash,
    )
    expected = compute_signature(credential.secret_access_key, amz_date, region, service, canonical)
    if not hmac.compare_digest(expected, auth.signature):
        raise SignatureRejected("SignatureDoesNotMatch", "the request signature does not match")
    return credential
