"""AWS Signature Version 4 (HMAC-SHA256) for request headers, as ImageX expects (protocol §8).

It owns the canonical request, the string to sign, the signing key and the ``Authorization``
header. It is pure: no I/O, no clock (the caller passes ``now``), no logging; it must not know
about ImageX beyond ``region_from_host``.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from urllib.parse import quote, unquote, urlsplit

ALGORITHM = "AWS4-HMAC-SHA256"
_UNRESERVED = "-_.~"  # plus A-Za-z0-9, which ``quote`` never encodes
_SPACES = re.compile(r"\s+")
_IMAGEX_HOST = re.compile(r"^imagex-([a-z0-9][a-z0-9-]*)\.bytevcloudapi\.com$")
_DEFAULT_PORTS = {"http": 80, "https": 443}
# Never part of the signature: the header it produces, and the one the caller's clock replaces.
_NOT_SIGNED = frozenset({"authorization"})


def uri_encode(value: str, *, keep_slash: bool = False) -> str:
    """RFC 3986 percent-encoding of UTF-8 bytes: only ``A-Za-z0-9-_.~`` stay as they are."""
    return quote(value, safe=_UNRESERVED + ("/" if keep_slash else ""))


def format_amz_date(now: datetime) -> str:
    """``YYYYMMDDTHHMMSSZ`` in UTC; ``now`` must carry a time zone."""
    if now.tzinfo is None:
        raise ValueError("sigv4 needs an aware datetime (UTC), not a naive one")
    return now.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def credential_scope(date: str, region: str, service: str) -> str:
    """``<yyyymmdd>/<region>/<service>/aws4_request``."""
    return f"{date}/{region}/{service}/aws4_request"


def host_of(url: str) -> str:
    """The ``Host`` header an HTTP client sends for ``url`` (default ports left out)."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if ":" in host:  # an IPv6 literal keeps its brackets
        host = f"[{host}]"
    port = parts.port
    if port is not None and port != _DEFAULT_PORTS.get(parts.scheme.lower()):
        return f"{host}:{port}"
    return host


def canonical_uri(path: str) -> str:
    """The path, decoded once and URI-encoded once with ``/`` kept; empty becomes ``/``."""
    return uri_encode(unquote(path), keep_slash=True) if path else "/"


def canonical_query(query: str) -> str:
    """Every ``key=value`` pair URI-encoded, sorted by key then value, joined by ``&``."""
    pairs = []
    for item in query.split("&"):
        if not item:
            continue
        key, _, value = item.partition("=")
        pairs.append((uri_encode(unquote(key)), uri_encode(unquote(value))))
    return "&".join(f"{key}={value}" for key, value in sorted(pairs))


def _headers_to_sign(url: str, headers: Mapping[str, str]) -> list[tuple[str, str]]:
    """Lowercased names with trimmed, space-collapsed values, sorted; ``host`` always present."""
    signed: dict[str, str] = {}
    for name, value in headers.items():
        key = name.strip().lower()
        if key not in _NOT_SIGNED:
            signed[key] = _SPACES.sub(" ", value.strip())
    signed.setdefault("host", host_of(url))
    return sorted(signed.items())


def signed_header_names(url: str, headers: Mapping[str, str]) -> str:
    """The ``SignedHeaders`` value: the sorted lowercase names joined by ``;``."""
    return ";".join(name for name, _ in _headers_to_sign(url, headers))


def canonical_request(method: str, url: str, headers: Mapping[str, str], body: bytes) -> str:
    """The canonical request of AWS SigV4 for exactly ``headers`` (plus ``host``)."""
    parts = urlsplit(url)
    pairs = _headers_to_sign(url, headers)
    return "\n".join(
        [
            method.upper(),
            canonical_uri(parts.path),
            canonical_query(parts.query),
            "".join(f"{name}:{value}\n" for name, value in pairs),
            ";".join(name for name, _ in pairs),
            hashlib.sha256(body).hexdigest(),
        ]
    )


def string_to_sign(amz_date: str, scope: str, canonical: str) -> str:
    """Algorithm, timestamp, scope and the hex SHA-256 of the canonical request."""
    digest = hashlib.sha256(canonical.encode()).hexdigest()
    return f"{ALGORITHM}\n{amz_date}\n{scope}\n{digest}"


def signing_key(secret_key: str, date: str, region: str, service: str) -> bytes:
    """The derived key: HMAC chain over date, region, service and ``aws4_request``."""
    key = f"AWS4{secret_key}".encode()
    for part in (date, region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def sign(
    method: str,
    url: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    access_key: str,
    secret_key: str,
    session_token: str | None,
    region: str,
    service: str,
    now: datetime,
) -> dict[str, str]:
    """The headers to add to the request: ``X-Amz-Date``, ``X-Amz-Security-Token`` (when a
    session token is given) and ``Authorization``. All of ``headers`` are signed, with ``host``
    from the URL unless given; the date and token are signed too."""
    amz_date = format_amz_date(now)
    added = {"X-Amz-Date": amz_date}
    if session_token is not None:
        added["X-Amz-Security-Token"] = session_token
    replaced = {name.lower() for name in added}
    to_sign = {name: value for name, value in headers.items() if name.lower() not in replaced}
    to_sign.update(added)
    scope = credential_scope(amz_date[:8], region, service)
    canonical = canonical_request(method, url, to_sign, body)
    key = signing_key(secret_key, amz_date[:8], region, service)
    signature = hmac.new(
        key, string_to_sign(amz_date, scope, canonical).encode(), hashlib.sha256
    ).hexdigest()
    added["Authorization"] = (
        f"{ALGORITHM} Credential={access_key}/{scope}, "
        f"SignedHeaders={signed_header_names(url, to_sign)}, Signature={signature}"
    )
    return added


def region_from_host(host: str) -> str | None:
    """``imagex-<region>.bytevcloudapi.com`` (any port, any case) → ``<region>``; else None."""
    name = host.strip().lower()
    if "://" in name:
        name = urlsplit(name).hostname or ""
    name = name.rsplit(":", 1)[0] if name.count(":") == 1 else name
    match = _IMAGEX_HOST.match(name)
    return match.group(1) if match else None
