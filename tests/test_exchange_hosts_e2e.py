"""REFRESH_TOKEN_URL as a list of exchange hosts (dialect §7: CN's api.trae.com.cn, then
api.trae.cn), through the real rotation process: the next host only when the first cannot have
seen the single-use refresh token."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
import pytest

from conftest import Gateway, free_port
from trae2api.testing import SimulatedTrae


@pytest.fixture
def other() -> Iterator[SimulatedTrae]:
    """A second simulator: another account's exchange host."""
    with SimulatedTrae() as running:
        yield running


def chat(gateway: Gateway) -> str:
    with gateway.client() as client:
        reply = client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "hi"}]
        )
    return reply.choices[0].message.content or ""


@pytest.mark.slow
def test_unreachable_first_host_falls_back(sim: SimulatedTrae, start_gateway: Any) -> None:
    """A refused connection to the first host: the exchange goes to the next one."""
    first = f"http://127.0.0.1:{free_port()}"
    gateway = start_gateway(refresh_token_url=f"{first},{sim.url}")
    assert "You said: hi" in chat(gateway)
    assert sim.control.stats()["exchanges_ok"] == 1


@pytest.mark.slow
def test_404_page_first_host_falls_back(
    sim: SimulatedTrae, other: SimulatedTrae, start_gateway: Any
) -> None:
    """A host without the exchange route (a 404 page) is skipped."""
    other.control.configure(exchange_endpoint=False)
    gateway = start_gateway(refresh_token_url=f"{other.url},{sim.url}")
    assert "You said: hi" in chat(gateway)
    assert sim.control.stats()["exchanges_ok"] == 1
    assert other.control.stats()["exchanges_rejected"] == 0


@pytest.mark.slow
def test_no_fallback_after_an_answer(
    sim: SimulatedTrae, other: SimulatedTrae, start_gateway: Any
) -> None:
    """A host that answered (here: refused the token) may have burnt it: no second host."""
    gateway = start_gateway(refresh_token_url=f"{other.url},{sim.url}")
    with pytest.raises(openai.APIStatusError) as info:
        chat(gateway)
    assert info.value.status_code == 503
    assert info.value.code == "reauth_required"
    assert other.control.stats()["exchanges_rejected"] == 1
    stats = sim.control.stats()
    assert (stats["exchanges_ok"], stats["exchanges_rejected"]) == (0, 0)
