"""Prometheus metrics: one registry per application, served at ``/metrics``.

Labels have bounded values only (route templates, configured key names, a capped set of model
names); nothing here runs per streamed chunk.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from trae2api.auth.credentials import Credentials
from trae2api.auth.rotation import Rotation, Rotator
from trae2api.errors import ApiError, ReauthRequired

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_LATENCY = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
_FIRST_CHUNK = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_QUEUE = (0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
_MAX_MODELS = 32
NO_LABEL = "-"
OTHER = "other"


class Metrics:
    """The gateway's metrics; every method is cheap and safe to call on the event loop."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        reg = self.registry
        self.requests = Counter(
            "trae2api_requests",
            "HTTP requests by route template, method, status, model and client key name",
            ["route", "method", "status", "model", "client"],
            registry=reg,
        )
        self.latency = Histogram(
            "trae2api_request_duration_seconds",
            "Time from request to the last byte of the response (whole stream included)",
            ["route", "model", "status"],
            buckets=_LATENCY,
            registry=reg,
        )
        self.first_chunk = Histogram(
            "trae2api_time_to_first_chunk_seconds",
            "Streamed chat: time until the first chunk was ready",
            ["model"],
            buckets=_FIRST_CHUNK,
            registry=reg,
        )
        self.active_streams = Gauge(
            "trae2api_active_streams", "Chat streams being sent now", registry=reg
        )
        self.upstream_errors = Counter(
            "trae2api_upstream_errors",
            "Failed upstream attempts by error code (retries included)",
            ["code"],
            registry=reg,
        )
        self.refreshes = Counter(
            "trae2api_token_refreshes",
            "Refresh-token rotations by outcome (ok, rejected, error, unsaved, lost_race)",
            ["outcome"],
            registry=reg,
        )
        self.queue_wait = Histogram(
            "trae2api_queue_wait_seconds",
            "Time a chat spent in Trae's queue (only chats that were queued)",
            buckets=_QUEUE,
            registry=reg,
        )
        self.rate_limited = Counter(
            "trae2api_rate_limited",
            "Requests refused by the per-key rate limit",
            ["client"],
            registry=reg,
        )
        self.credits = Gauge(
            "trae2api_credits_remaining",
            "Trae credits left as last reported (dialect §7): ide and work from a chat's "
            "notify_usage, balance from the account host",
            ["kind"],
            registry=reg,
        )
        self._models: set[str] = set()

    def model_label(self, model: str | None, status: int) -> str:
        """``model`` if it is known or was served fine (at most 32 names), else a constant."""
        if model is None:
            return NO_LABEL
        if model in self._models:
            return model
        if status < 400 and len(self._models) < _MAX_MODELS:
            self._models.add(model)
            return model
        return OTHER

    def request_done(
        self, route: str, method: str, status: int, model: str | None, client: str, seconds: float
    ) -> None:
        label = self.model_label(model, status)
        code = str(status)
        self.requests.labels(route, method, code, label, client).inc()
        self.latency.labels(route, label, code).observe(seconds)

    def upstream_error(self, error: ApiError) -> None:
        self.upstream_errors.labels(error.code or error.type).inc()

    def queued(self, queued: QueueClock) -> None:
        if queued.queue_wait is not None:
            self.queue_wait.observe(queued.queue_wait)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class QueueClock(Protocol):
    """What ``Answer`` says about queueing: seconds spent queued, None if never queued."""

    @property
    def queue_wait(self) -> float | None: ...


class MeteredRotator:
    """A rotator whose every refresh is counted by outcome."""

    def __init__(self, inner: Rotator, metrics: Metrics) -> None:
        self._inner = inner
        self._metrics = metrics

    async def rotate(self, current: Credentials, lock_owner: str) -> Rotation:
        outcome = "error"
        try:
            rotation = await self._inner.rotate(current, lock_owner)
            outcome = "ok" if rotation.outcome == "stored" else rotation.outcome
            return rotation
        except ReauthRequired:
            outcome = "rejected"
            raise
        except asyncio.CancelledError:
            outcome = "cancelled"
            raise
        finally:
            self._metrics.refreshes.labels(outcome).inc()
