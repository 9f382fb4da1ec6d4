"""Fetch remote images for ``image_url`` parts without letting clients reach private networks.

Owns ``ImageFetcher`` (an ``httpx.AsyncClient`` of its own, the SSRF guard, manual redirects,
size and time limits) and ``load_image``, which dispatches ``data:`` versus ``http(s)://`` URLs.

The guard (skipped when ``allow_private``): only http and https; ``localhost`` names are refused
outright; literal IPs are checked as they are; other hosts are resolved once and refused when
ANY address is not public (see ``refused_address_rule``). The request then goes to the checked IP
itself, with the original ``Host`` header and TLS SNI/verification against the original
hostname, so a second DNS answer (rebinding) can never be used. Every redirect hop is checked
again. Connections are not kept alive, so a connection pinned for one hostname is never reused
for another that happens to share its IP.

This module must not parse image formats (``trae2api.wire.images`` does) nor read settings.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import socket
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import httpx

from trae2api.errors import InvalidRequest
from trae2api.wire.images import ImageData, check_size, decode_data_url, inspect_image

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Awaitable[list[str]]]
AddressRule = Callable[[IPAddress], str | None]

_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_DEFAULT_PORTS = {"http": 80, "https": 443}
_USER_AGENT = "trae2api-imagefetch/1"


def refused_address_rule(address: IPAddress) -> str | None:
    """The rule that makes ``address`` unfit to fetch from, or None when it is public."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is not None:
            rule = refused_address_rule(embedded)
            return f"{rule} (embedded in IPv6)" if rule else None
        if address.is_site_local:
            return "site-local"
    checks = (
        ("unspecified", address.is_unspecified),
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("private", address.is_private),
        ("reserved", address.is_reserved),
        ("non-global", not address.is_global),
    )
    return next((rule for rule, hit in checks if hit), None)


async def system_resolver(host: str, port: int) -> list[str]:
    """Every address the system resolver gives for ``host`` (TCP), in its order."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


@dataclass(frozen=True)
class _Target:
    """One hop: the URL the client named and the checked addresses to connect to instead."""

    url: httpx.URL
    hostname: str  # ASCII (IDNA) form, for SNI and the Host header
    addresses: list[str]


class ImageFetcher:
    """Downloads images over http(s) within a size limit, a time limit and the SSRF guard."""

    def __init__(
        self,
        *,
        max_bytes: int,
        timeout: float = 10.0,
        allow_private: bool = False,
        max_redirects: int = 3,
        verify: ssl.SSLContext | str | bool = True,
        resolver: Resolver | None = None,
        address_rule: AddressRule = refused_address_rule,
    ) -> None:
        self.max_bytes = max_bytes
        self.timeout = timeout
        self.allow_private = allow_private
        self.max_redirects = max_redirects
        self._resolver = resolver or system_resolver
        self._address_rule = address_rule
        self._client = httpx.AsyncClient(
            follow_redirects=False,
            trust_env=False,
            verify=_ssl_context(verify),
            timeout=httpx.Timeout(timeout),
            limits=httpx.Limits(max_keepalive_connections=0),
        )

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self._client.aclose()

    async def fetch(self, url: str, *, param: str | None = None) -> ImageData:
        """Download ``url`` (following checked redirects) and validate it as an image."""
        try:
            async with asyncio.timeout(self.timeout):
                data = await self._follow(url, param)
        except (TimeoutError, httpx.TimeoutException):
            raise _fetch_failed(param, f"timed out after {self.timeout:g} s") from None
        return inspect_image(data, max_bytes=self.max_bytes, param=param)

    async def _follow(self, url: str, param: str | None) -> bytes:
        current = _parse(url, param)
        for _ in range(self.max_redirects + 1):
            target = await self._target(current, param)
            response = await self._open(target, param)
            try:
                if response.status_code not in _REDIRECTS:
                    return await self._read_body(response, param)
                location = response.headers.get("location")
                if not location:
                    raise _fetch_failed(param, f"HTTP {response.status_code} without a Location")
                current = _parse(str(current.join(location)), param)
            finally:
                await response.aclose()
        raise _fetch_failed(param, f"more than {self.max_redirects} redirects")

    async def _target(self, url: httpx.URL, param: str | None) -> _Target:
        """Check ``url``'s scheme and host, resolve it, and check every address."""
        if url.scheme not in _DEFAULT_PORTS:
            raise _not_allowed(param, "only http and https URLs may be fetched")
        hostname = url.raw_host.decode("ascii").lower().rstrip(".")
        if not hostname:
            raise _not_allowed(param, "the URL has no host")
        literal = _literal_ip(hostname)
        if not self.allow_private and (hostname == "localhost" or hostname.endswith(".localhost")):
            raise _not_allowed(param, f"the host {hostname} is a local name")
        if literal is not None:
            addresses = [str(literal)]
        else:
            addresses = await self._resolve(hostname, url.port or _DEFAULT_PORTS[url.scheme], param)
        if not self.allow_private:
            self._check_addresses(hostname, literal is not None, addresses, param)
        return _Target(url=url, hostname=hostname, addresses=addresses)

    def _check_addresses(
        self, hostname: str, literal: bool, addresses: list[str], param: str | None
    ) -> None:
        for text in addresses:
            rule = self._address_rule(ipaddress.ip_address(text))
            if rule is None:
                continue
            if literal:
                raise _not_allowed(param, f"the URL names a {rule} address")
            raise _not_allowed(param, f"the host {hostname} resolves to a {rule} address")

    async def _resolve(self, hostname: str, port: int, param: str | None) -> list[str]:
        try:
            found = await self._resolver(hostname, port)
        except OSError:
            found = []
        addresses = [text.split("%", 1)[0] for text in found]  # drop IPv6 zone ids
        if not addresses or any(_literal_ip(text) is None for text in addresses):
            raise _fetch_failed(param, f"could not resolve the host {hostname}")
        return addresses

    async def _open(self, target: _Target, param: str | None) -> httpx.Response:
        """Send the GET to each checked address in turn until one accepts the connection."""
        error: httpx.TransportError | None = None
        for address in target.addresses:
            request = self._client.build_request(
                "GET",
                target.url.copy_with(host=address, fragment=None),
                headers={
                    "Host": _host_header(target),
                    "Accept": "image/*",
                    "Accept-Encoding": "identity",
                    "User-Agent": _USER_AGENT,
                },
                extensions={"sni_hostname": target.hostname},
            )
            try:
                return await self._client.send(request, stream=True)
            except httpx.ConnectError as exc:
                error = exc
            except httpx.TimeoutException:
                raise
            except httpx.TransportError as exc:
                raise _fetch_failed(param, _describe(exc)) from None
        raise _fetch_failed(param, _describe(error)) from None

    async def _read_body(self, response: httpx.Response, param: str | None) -> bytes:
        """Stream the body, refusing it once it exceeds ``max_bytes``."""
        if not response.is_success:
            raise _fetch_failed(param, f"HTTP {response.status_code}")
        encoding = response.headers.get("content-encoding", "identity").strip().lower()
        if encoding not in ("", "identity"):
            raise _fetch_failed(param, f"the response is compressed ({encoding})")
        declared = response.headers.get("content-length", "")
        if declared.isdigit():
            check_size(int(declared), max_bytes=self.max_bytes, param=param)
        body = bytearray()
        try:
            async for chunk in response.aiter_raw():
                body += chunk
                check_size(len(body), max_bytes=self.max_bytes, param=param)
        except httpx.TimeoutException:
            raise
        except httpx.TransportError as exc:
            raise _fetch_failed(param, _describe(exc)) from None
        return bytes(body)


async def load_image(
    url: str, fetcher: ImageFetcher, *, max_bytes: int, param: str | None = None
) -> ImageData:
    """Decode a ``data:`` URL or fetch an ``http(s)://`` one; anything else is a 400.

    ``max_bytes`` applies to both; a fetch is also bounded by the fetcher's own limit.
    """
    scheme = url.split(":", 1)[0].strip().lower() if ":" in url else ""
    if scheme == "data":
        return decode_data_url(url, max_bytes=max_bytes, param=param)
    if scheme in _DEFAULT_PORTS:
        image = await fetcher.fetch(url, param=param)
        check_size(len(image.data), max_bytes=max_bytes, param=param)
        return image
    raise InvalidRequest(
        "an image URL must be a data: URL (base64) or an http(s):// URL",
        param=param,
        code="invalid_image_url",
    )


def _parse(url: str, param: str | None) -> httpx.URL:
    try:
        return httpx.URL(url)
    except (httpx.InvalidURL, ValueError, TypeError):
        raise InvalidRequest(
            "the image URL is malformed", param=param, code="invalid_image_url"
        ) from None


def _literal_ip(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _host_header(target: _Target) -> str:
    """``host[:port]`` as the client's URL named it (IPv6 literals in brackets)."""
    host = f"[{target.hostname}]" if ":" in target.hostname else target.hostname
    port = target.url.port
    return host if port is None else f"{host}:{port}"


def _ssl_context(verify: ssl.SSLContext | str | bool) -> ssl.SSLContext | bool:
    """httpx deprecates ``verify=<path>``; a path becomes a context trusting that CA bundle."""
    if isinstance(verify, str):
        if os.path.isdir(verify):
            return ssl.create_default_context(capath=verify)
        return ssl.create_default_context(cafile=verify)
    return verify


def _describe(exc: BaseException | None) -> str:
    """A short reason for a transport failure, naming TLS problems as such."""
    if exc is None:
        return "the connection failed"
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ssl.SSLCertVerificationError):
            return f"TLS certificate verification failed ({cause.verify_message})"
        if isinstance(cause, ssl.SSLError):
            return f"the TLS handshake failed ({cause.reason})"
        cause = cause.__cause__ or cause.__context__
    return f"the connection failed ({exc!s})"


def _fetch_failed(param: str | None, reason: str) -> InvalidRequest:
    return InvalidRequest(
        f"could not fetch the image URL: {reason}", param=param, code="image_fetch_failed"
    )


def _not_allowed(param: str | None, rule: str) -> InvalidRequest:
    return InvalidRequest(
        f"the image URL is not allowed: {rule}", param=param, code="image_url_not_allowed"
    )
