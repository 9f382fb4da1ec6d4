"""Prometheus /metrics: requests by route template, streams, upstream errors, refreshes, queues."""

from __future__ import annotations

from typing import Any

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import CLIENT_KEY, Gateway, wait_for
from trae2api.status.metrics import Metrics
from trae2api.testing import SimulatedTrae


def samples(gateway: Gateway) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of /metrics, keyed by name and labels (fetched without a key)."""
    response = httpx.get(f"{gateway.url}/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert CLIENT_KEY not in response.text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(found: dict[Any, float], name: str, **labels: str) -> float:
    return found.get((name, frozenset(labels.items())), 0.0)


def ask(text: str, **extra: Any) -> dict[str, Any]:
    return {"model": "gpt-4o", "messages": [{"role": "user", "content": text}], **extra}


@pytest.mark.slow
def test_metrics_count_requests_streams_errors_and_refreshes(
    sim: SimulatedTrae, gateway: Gateway
) -> None:
    """After a chat, a stream, a queued chat, an upstream error and a 401 the metrics agree."""
    assert wait_for(lambda: sim.control.stats()["exchanges_ok"] == 1)
    with gateway.client() as client:
        client.chat.completions.create(**ask("hi"))
        for _ in client.chat.completions.create(**ask("hi", stream=True)):
            pass
        client.chat.completions.create(**ask("[sim:queue 2] hi"))
        with pytest.raises(openai.APIStatusError):
            client.chat.completions.create(**ask("[sim:error 4023] hi"))
    with gateway.client("wrong-key-0123456789") as stranger, pytest.raises(openai.APIError):
        stranger.models.list()
    httpx.get(f"{gateway.url}/v1/models/gpt-4o")
    found = samples(gateway)
    chat = {"route": "/v1/chat/completions", "method": "POST", "client": "key-1"}
    assert value(found, "trae2api_requests_total", **chat, status="200", model="gpt-4o") == 3
    assert value(found, "trae2api_requests_total", **chat, status="404", model="gpt-4o") == 1
    unauthenticated = {"route": "/v1/models", "method": "GET", "status": "401", "model": "-"}
    assert value(found, "trae2api_requests_total", **unauthenticated, client="-") == 1
    assert any("{" in route for (_, labels) in found for key, route in labels if key == "route")
    assert value(found, "trae2api_time_to_first_chunk_seconds_count", model="gpt-4o") == 1
    assert value(found, "trae2api_active_streams") == 0
    assert value(found, "trae2api_upstream_errors_total", code="model_not_found") == 1
    assert value(found, "trae2api_token_refreshes_total", outcome="ok") == 1
    assert value(found, "trae2api_queue_wait_seconds_count") == 1
    assert value(found, "trae2api_queue_wait_seconds_sum") >= 0.3
    latency = {"route": "/v1/chat/completions", "model": "gpt-4o", "status": "200"}
    assert value(found, "trae2api_request_duration_seconds_count", **latency) == 3


def test_metrics_can_be_turned_off(start_gateway: Any) -> None:
    """METRICS_ENABLED=false removes /metrics (404) and the per-request recording."""
    gateway = start_gateway(metrics_enabled=False)
    assert httpx.get(f"{gateway.url}/metrics").status_code == 404


def test_model_labels_are_bounded() -> None:
    """At most 32 model names become labels, and only names that were served fine."""
    metrics = Metrics()
    assert metrics.model_label("made-up", 404) == "other"
    labels = [metrics.model_label(f"model-{index}", 200) for index in range(40)]
    assert labels[:32] == [f"model-{index}" for index in range(32)]
    assert set(labels[32:]) == {"other"}
    assert metrics.model_label("model-0", 502) == "model-0"
    assert metrics.model_label(None, 200) == "-"
