"""Remote images: a real loopback server, the SSRF guard, redirects, limits and pinned TLS.

Every connection in this file goes to 127.0.0.1 (or ::1 while resolving ``localhost``). Names
such as ``public.test`` only exist in the test resolver; addresses such as 10.0.0.1 are refused
by the guard before any connection is attempted, which the recorded hits prove.
"""

from __future__ import annotations

import base64
import contextlib
import http.server
import ipaddress
import socket
import ssl
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import pytest

from pngkit import png
from trae2api.errors import ApiError, InvalidRequest, PayloadTooLarge
from trae2api.upstream.imagefetch import (
    ImageFetcher,
    IPAddress,
    load_image,
    refused_address_rule,
    system_resolver,
)

MAX_BYTES = 100_000


PNG = png(7, 5)


@dataclass
class Hit:
    path: str
    host: str | None


class Handler(http.server.BaseHTTPRequestHandler):
    """Routes of the loopback image server; every request is recorded before it is answered."""

    server: ImageServer

    def log_message(self, format: str, *args: Any) -> None:
        """Keep test output quiet."""

    def do_GET(self) -> None:
        self.server.hits.append(Hit(self.path, self.headers.get("Host")))
        route = urlsplit(self.path)
        # The client may give up early; limits and timeouts do that on purpose.
        with contextlib.suppress(OSError):
            self.dispatch(route.path, parse_qs(route.query))

    def dispatch(self, path: str, query: dict[str, list[str]]) -> None:
        if path == "/x.png":
            self.reply(200, PNG, {"Content-Type": "image/png"})
        elif path == "/text":
            self.reply(200, b"hello, not an image", {"Content-Type": "image/png"})
        elif path == "/gzip":
            self.reply(200, PNG, {"Content-Encoding": "gzip"})
        elif path == "/huge-declared":
            self.reply(200, b"", {"Content-Length": str(10**9)}, length=False)
        elif path == "/huge-streamed":
            self.reply(200, b"", {}, length=False)
            for _ in range(64):
                self.wfile.write(bytes(32 * 1024))
        elif path == "/slow-body":
            self.reply(200, PNG[:10], {"Content-Length": str(len(PNG))}, length=False)
            self.server.stop.wait(5)
        elif path == "/slow-headers":
            self.server.stop.wait(5)
        elif path.startswith("/redirect/"):
            left = int(path.rsplit("/", 1)[1])
            self.redirect(f"/redirect/{left - 1}" if left > 1 else "/x.png")
        elif path == "/to":
            self.redirect(query["url"][0])
        elif path == "/loop":
            self.redirect("/loop")
        elif path == "/no-location":
            self.reply(302, b"", {})
        else:
            self.reply(404, b"not found", {})

    def redirect(self, location: str) -> None:
        self.reply(302, b"", {"Location": location})

    def reply(self, status: int, body: bytes, headers: dict[str, str], length: bool = True) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        if length:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()


class ImageServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        if tls is not None:
            self.socket = tls.wrap_socket(self.socket, server_side=True)
        self.hits: list[Hit] = []
        self.stop = threading.Event()
        self.port = int(self.server_address[1])

    def paths(self) -> list[str]:
        return [hit.path for hit in self.hits]


@contextlib.contextmanager
def running(tls: ssl.SSLContext | None = None) -> Iterator[ImageServer]:
    """An ImageServer serving from a thread until the block ends."""
    server = ImageServer(tls)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.stop.set()
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def server() -> Iterator[ImageServer]:
    with running() as srv:
        yield srv


@dataclass
class Resolver:
    """A DNS stand-in: a fixed table, and a record of every name asked for."""

    table: dict[str, list[str]] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)

    async def __call__(self, host: str, port: int) -> list[str]:
        self.calls.append(host)
        if host not in self.table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return self.table[host]


@contextlib.asynccontextmanager
async def fetcher(**options: Any) -> AsyncIterator[ImageFetcher]:
    """An ImageFetcher with test defaults, closed at the end of the block."""
    options.setdefault("max_bytes", MAX_BYTES)
    options.setdefault("timeout", 5.0)
    image_fetcher = ImageFetcher(**options)
    try:
        yield image_fetcher
    finally:
        await image_fetcher.aclose()


async def refusal(image_fetcher: ImageFetcher, url: str) -> ApiError:
    """The ApiError ``fetch`` raised for ``url``."""
    with pytest.raises(ApiError) as caught:
        await image_fetcher.fetch(url, param="messages[0].content[0].image_url")
    assert caught.value.param == "messages[0].content[0].image_url"
    return caught.value


LOCAL_URLS = [
    ("http://127.0.0.1:{port}/x.png", "loopback address"),
    ("http://localhost:{port}/x.png", "localhost is a local name"),
    ("http://LocalHost.:{port}/x.png", "localhost is a local name"),
    ("http://app.localhost:{port}/x.png", "app.localhost is a local name"),
    ("http://[::1]:{port}/x.png", "loopback address"),
    ("http://[::ffff:127.0.0.1]:{port}/x.png", "loopback (embedded in IPv6) address"),
    ("http://10.0.0.1/x.png", "private address"),
    ("http://192.168.1.20:8080/x.png", "private address"),
    ("http://169.254.169.254/latest/meta-data/", "link-local address"),
    ("http://0.0.0.0:{port}/x.png", "unspecified address"),
    ("http://224.0.0.1/x.png", "multicast address"),
    ("http://100.64.0.1/x.png", "non-global address"),
    ("ftp://127.0.0.1:{port}/x.png", "only http and https"),
    ("file:///etc/passwd", "only http and https"),
]


@pytest.mark.parametrize(("url", "rule"), LOCAL_URLS)
async def test_guard_refuses_local_targets_without_connecting(
    server: ImageServer, url: str, rule: str
) -> None:
    """Literal local IPs, localhost names and other schemes are refused before DNS or TCP."""
    resolver = Resolver()
    async with fetcher(resolver=resolver) as image_fetcher:
        error = await refusal(image_fetcher, url.format(port=server.port))
    assert (error.status, error.code) == (400, "image_url_not_allowed")
    assert rule in error.message
    assert resolver.calls == []
    assert server.hits == []


REBINDING = [
    ("images.example", ["127.0.0.1"], "loopback"),
    ("mixed.example", ["93.184.216.34", "10.1.2.3"], "private"),
    ("v6.example", ["fe80::1%eth0"], "link-local"),
    ("mapped.example", ["::ffff:192.168.1.1"], "private (embedded in IPv6)"),
]


@pytest.mark.parametrize(("host", "addresses", "rule"), REBINDING)
async def test_names_resolving_to_non_public_addresses_are_refused(
    server: ImageServer, host: str, addresses: list[str], rule: str
) -> None:
    """A public-looking name is refused when ANY address it resolves to is not public."""
    resolver = Resolver({host: addresses})
    async with fetcher(resolver=resolver) as image_fetcher:
        error = await refusal(image_fetcher, f"http://{host}:{server.port}/x.png")
    assert error.code == "image_url_not_allowed"
    assert f"the host {host} resolves to a {rule} address" in error.message
    assert not any(address.split("%")[0] in error.message for address in addresses)
    assert resolver.calls == [host]
    assert server.hits == []


@pytest.mark.parametrize(
    ("url", "host_header"),
    [
        ("http://127.0.0.1:{port}/x.png", "127.0.0.1:{port}"),
        ("http://images.test:{port}/x.png", "images.test:{port}"),
        ("http://IMAGES.test:{port}/x.png#fragment", "images.test:{port}"),
        ("http://dual.test:{port}/x.png", "dual.test:{port}"),
    ],
)
async def test_allow_private_fetches_from_the_pinned_address(
    server: ImageServer, url: str, host_header: str
) -> None:
    """With allow_private the PNG arrives from a resolved IP (each tried in turn) under the Host."""
    resolver = Resolver({"images.test": ["127.0.0.1"], "dual.test": ["::1", "127.0.0.1"]})
    async with fetcher(resolver=resolver, allow_private=True) as image_fetcher:
        image = await image_fetcher.fetch(url.format(port=server.port))
    assert (image.format, image.width, image.height, image.data) == ("png", 7, 5, PNG)
    assert server.hits == [Hit("/x.png", host_header.format(port=server.port))]


FAILURES: list[tuple[str, type[ApiError], str, str]] = [
    ("/text", InvalidRequest, "invalid_image", "is not a PNG, JPEG, WebP or GIF image"),
    ("/missing", InvalidRequest, "image_fetch_failed", "HTTP 404"),
    ("/no-location", InvalidRequest, "image_fetch_failed", "HTTP 302 without a Location"),
    ("/loop", InvalidRequest, "image_fetch_failed", "more than 3 redirects"),
    ("/redirect/4", InvalidRequest, "image_fetch_failed", "more than 3 redirects"),
    ("/gzip", InvalidRequest, "image_fetch_failed", "compressed (gzip)"),
    ("/slow-body", InvalidRequest, "image_fetch_failed", "timed out after 0.5 s"),
    ("/slow-headers", InvalidRequest, "image_fetch_failed", "timed out after 0.5 s"),
    ("/huge-declared", PayloadTooLarge, "request_too_large", "MAX_IMAGE_BYTES"),
    ("/huge-streamed", PayloadTooLarge, "request_too_large", "100000 bytes"),
]


@pytest.mark.parametrize(("path", "kind", "code", "words"), FAILURES)
async def test_remote_failures_are_client_errors(
    server: ImageServer, path: str, kind: type[ApiError], code: str, words: str
) -> None:
    """Non-images, HTTP errors, redirect loops, slowness and oversize bodies become 400 or 413."""
    async with fetcher(allow_private=True, timeout=0.5) as image_fetcher:
        error = await refusal(image_fetcher, f"http://127.0.0.1:{server.port}{path}")
    assert type(error) is kind
    assert error.code == code
    assert words in error.message


@pytest.mark.parametrize(
    ("path", "expected_hits"),
    [
        ("/redirect/3", ["/redirect/3", "/redirect/2", "/redirect/1", "/x.png"]),
        (
            "/to?url=http://127.0.0.1:{port}/x.png",
            ["/to?url=http://127.0.0.1:{port}/x.png", "/x.png"],
        ),
        ("/to?url=//images.test:{port}/x.png", ["/to?url=//images.test:{port}/x.png", "/x.png"]),
    ],
)
async def test_redirects_are_followed_up_to_the_limit(
    server: ImageServer, path: str, expected_hits: list[str]
) -> None:
    """Relative, absolute and scheme-relative redirects are followed, at most max_redirects."""
    resolver = Resolver({"images.test": ["127.0.0.1"]})
    async with fetcher(allow_private=True, resolver=resolver) as image_fetcher:
        image = await image_fetcher.fetch(
            f"http://127.0.0.1:{server.port}{path}".format(port=server.port)
        )
    assert image.data == PNG
    assert server.paths() == [hit.format(port=server.port) for hit in expected_hits]


def loopback_is_public(address: IPAddress) -> str | None:
    """The default rule, except that 127.0.0.1 stands in for a public server."""
    if address == ipaddress.ip_address("127.0.0.1"):
        return None
    return refused_address_rule(address)


@pytest.mark.parametrize(
    ("target", "rule"),
    [
        ("http://localhost:{port}/x.png", "localhost is a local name"),
        ("http://127.0.0.2:{port}/x.png", "loopback address"),
        ("http://[::1]:{port}/x.png", "loopback address"),
        ("http://10.0.0.1/x.png", "private address"),
        ("http://169.254.169.254/latest/meta-data/", "link-local address"),
        ("http://inner.test:{port}/x.png", "inner.test resolves to a private address"),
        ("ftp://public.test/x.png", "only http and https"),
    ],
)
async def test_every_redirect_hop_is_checked(server: ImageServer, target: str, rule: str) -> None:
    """A redirect from an allowed host to a non-public one is refused before the second hop."""
    resolver = Resolver({"public.test": ["127.0.0.1"], "inner.test": ["192.168.0.5"]})
    first = f"/to?url={quote(target.format(port=server.port), safe='')}"
    async with fetcher(resolver=resolver, address_rule=loopback_is_public) as image_fetcher:
        assert (await image_fetcher.fetch(f"http://public.test:{server.port}/x.png")).data == PNG
        error = await refusal(image_fetcher, f"http://public.test:{server.port}{first}")
    assert error.code == "image_url_not_allowed"
    assert rule in error.message
    assert server.paths() == ["/x.png", first]


@pytest.mark.parametrize(
    ("resolved", "words"),
    [
        (None, "could not resolve the host nowhere.test"),
        ([], "could not resolve the host nowhere.test"),
        (["not-an-address"], "could not resolve the host nowhere.test"),
    ],
)
async def test_unresolvable_hosts_are_fetch_failures(
    resolved: list[str] | None, words: str
) -> None:
    """A name that does not resolve to IP addresses is a 400 image_fetch_failed."""
    resolver = Resolver({} if resolved is None else {"nowhere.test": resolved})
    async with fetcher(resolver=resolver) as image_fetcher:
        error = await refusal(image_fetcher, "https://nowhere.test/x.png")
    assert error.code == "image_fetch_failed"
    assert words in error.message


async def test_a_refused_connection_is_a_fetch_failure() -> None:
    """Nothing listening on the port is a 400 image_fetch_failed."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    async with fetcher(allow_private=True) as image_fetcher:
        error = await refusal(image_fetcher, f"http://127.0.0.1:{port}/x.png")
    assert error.code == "image_fetch_failed"
    assert "connection failed" in error.message


async def test_the_system_resolver_is_the_default(server: ImageServer) -> None:
    """The system resolver is the default when no resolver is given."""
    assert await system_resolver("127.0.0.1", 80) == ["127.0.0.1"]
    async with fetcher(allow_private=True) as image_fetcher:
        image = await image_fetcher.fetch(f"http://localhost:{server.port}/x.png")
    assert image.data == PNG
    assert server.hits == [Hit("/x.png", f"localhost:{server.port}")]


@pytest.mark.parametrize(
    ("cert_host", "verify_as", "error"),
    [
        ("images.test", "context", None),
        ("images.test", "path", None),
        ("other.test", "context", "TLS certificate verification failed"),
    ],
)
async def test_tls_is_verified_against_the_original_hostname(
    tmp_path: Path, cert_host: str, verify_as: str, error: str | None
) -> None:
    """The pinned connection still checks the certificate against the name in the URL."""
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(cert_host).configure_cert(server_context)
    verify: ssl.SSLContext | str = ssl.create_default_context()
    if verify_as == "path":
        verify = str(tmp_path / "ca.pem")
        ca.cert_pem.write_to_path(verify)
    else:
        ca.configure_trust(verify)
    resolver = Resolver({"images.test": ["127.0.0.1"]})
    with running(server_context) as tls_server:
        url = f"https://images.test:{tls_server.port}/x.png"
        async with fetcher(resolver=resolver, allow_private=True, verify=verify) as image_fetcher:
            if error is None:
                assert (await image_fetcher.fetch(url)).data == PNG
                assert tls_server.hits == [Hit("/x.png", f"images.test:{tls_server.port}")]
                return
            failure = await refusal(image_fetcher, url)
    assert failure.code == "image_fetch_failed"
    assert error in failure.message
    assert tls_server.hits == []


@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("http://127.0.0.1:{port}/x.png", None),
        ("data:image/png;base64,{png}", None),
        ("data:text/plain;base64,{png}", "invalid_image"),
        ("file:///etc/passwd", "invalid_image_url"),
        ("ftp://127.0.0.1:{port}/x.png", "invalid_image_url"),
        ("javascript:alert(1)", "invalid_image_url"),
        ("/relative/x.png", "invalid_image_url"),
        ("", "invalid_image_url"),
    ],
)
async def test_load_image_dispatches_on_the_scheme(
    server: ImageServer, url: str, code: str | None
) -> None:
    """data: URLs are decoded, http(s) URLs fetched, and every other scheme is a 400."""
    url = url.format(port=server.port, png=base64.b64encode(PNG).decode())
    async with fetcher(allow_private=True) as image_fetcher:
        if code is None:
            assert (await load_image(url, image_fetcher, max_bytes=MAX_BYTES)).data == PNG
            return
        with pytest.raises(InvalidRequest) as caught:
            await load_image(url, image_fetcher, max_bytes=MAX_BYTES, param="image_url")
    assert (caught.value.code, caught.value.param) == (code, "image_url")
    assert server.hits == []


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:{port}/x.png", "data:image/png;base64,{png}"], ids=["http", "data"]
)
async def test_load_image_applies_its_own_limit(server: ImageServer, url: str) -> None:
    """An image over load_image's max_bytes is a 413 whether it was fetched or inlined."""
    url = url.format(port=server.port, png=base64.b64encode(PNG).decode())
    async with fetcher(allow_private=True) as image_fetcher:
        with pytest.raises(PayloadTooLarge):
            await load_image(url, image_fetcher, max_bytes=len(PNG) - 1, param="image_url")


@pytest.mark.parametrize(
    ("address", "rule"),
    [
        ("8.8.8.8", None),
        ("2606:4700:4700::1111", None),
        ("::ffff:8.8.8.8", None),
        ("127.0.0.1", "loopback"),
        ("127.255.0.9", "loopback"),
        ("10.1.1.1", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("169.254.169.254", "link-local"),
        ("0.0.0.0", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("100.64.0.1", "non-global"),
        ("::1", "loopback"),
        ("::", "unspecified"),
        ("fe80::1", "link-local"),
        ("fc00::1", "private"),
        ("fec0::1", "site-local"),
        ("ff02::1", "multicast"),
        ("::ffff:10.0.0.1", "private (embedded in IPv6)"),
        ("::ffff:169.254.169.254", "link-local (embedded in IPv6)"),
        ("2002:7f00:1::1", "loopback (embedded in IPv6)"),
    ],
)
def test_address_rules(address: str, rule: str | None) -> None:
    """Only globally routable unicast addresses pass; the rule names why others fail."""
    assert refused_address_rule(ipaddress.ip_address(address)) == rule
