"""The one place where httpx's exceptions become trae2api's, and where Trae's httpx clients are
made; it must not decide retries.

Transport failures (refused, reset, timed out, protocol garbage) all mean "Trae could not be
reached" to a client: ``UpstreamUnavailable``, retryable before the first byte (protocol §7).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from trae2api.errors import UpstreamUnavailable


@contextmanager
def mapped_transport_errors(what: str) -> Iterator[None]:
    """Re-raise httpx failures while doing ``what`` as ``UpstreamUnavailable``."""
    try:
        yield
    except httpx.TimeoutException as exc:
        raise UpstreamUnavailable(
            f"Trae did not answer in time while {what}", status=504, code="upstream_timeout"
        ) from exc
    except httpx.TransportError as exc:
        raise UpstreamUnavailable(
            f"Trae could not be reached while {what} ({type(exc).__name__})",
            code="upstream_unreachable",
        ) from exc


def upstream_http_client(connect: float, read: float) -> httpx.AsyncClient:
    """An httpx client for Trae: our timeouts, no redirects, and no proxy from the environment."""
    return httpx.AsyncClient(
        timeout=httpx.Timeout(connect=connect, read=read, write=30.0, pool=30.0),
        limits=httpx.Limits(max_connections=1000, max_keepalive_connections=200),
        follow_redirects=False,
        trust_env=False,
    )
