"""Upstream faults through real servers: every request ends, in time, in a well-formed answer.

A fault before the first byte ends in an OpenAI error envelope with a sensible status; after it,
a stream ends with an in-band ``data: {"error": ...}`` and ``data: [DONE]``. The simulator's
faults are described in ``trae2api.testing.faults``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from conftest import Gateway, free_port, settings_for
from faultkit import Outcome, chat
from trae2api.testing import SimulatedTrae

pytestmark = pytest.mark.timeout(20)
READ_TIMEOUT = 0.5  # UPSTREAM_READ_TIMEOUT: every stall below is longer
# Two attempts (UPSTREAM_RETRIES=1) of at most READ_TIMEOUT each, one backoff, and slack.
BOUND = 4.0
ANSWER = "Hello! You said: hi (turn 0)"
OK = ("ok", 200, None)


def error(status: int, code: str) -> tuple[str, int, str]:
    return ("error", status, code)


def in_band(code: str) -> tuple[str, int, str]:
    return ("in-band", 200, code)


# id, directive, non-streamed expectation, streamed expectation
CASES: list[tuple[str, str, tuple[str, int, str | None], tuple[str, int, str | None]]] = [
    ("reset-before-first-byte", "[sim:reset]", *[error(502, "upstream_unreachable")] * 2),
    (
        "reset-after-first-byte",
        "[sim:fault reset-midstream]",
        error(502, "upstream_unreachable"),
        in_band("upstream_unreachable"),
    ),
    ("html-500", "[sim:http 500]", *[error(502, "upstream_unavailable")] * 2),
    ("html-503", "[sim:http 503]", *[error(502, "upstream_unavailable")] * 2),
    ("stall-before-headers", "[sim:fault stall-headers 5]", *[error(504, "upstream_timeout")] * 2),
    ("stall-before-first-event", "[sim:wait 5]", *[error(504, "upstream_timeout")] * 2),
    (
        "stall-midstream",
        "[sim:fault stall-midstream 5]",
        error(504, "upstream_timeout"),
        in_band("upstream_timeout"),
    ),
    ("slow-drip", "[sim:fault drip 1]", OK, OK),
    ("malformed-sse", "[sim:fault malformed]", OK, OK),
    (
        "oversized-sse-line",
        "[sim:fault oversized]",
        error(502, "upstream_error"),
        in_band("upstream_error"),
    ),
    ("invalid-utf8", "[sim:fault bad-utf8]", OK, OK),
    ("binary-garbage", "[sim:fault garbage]", *[error(502, "upstream_error")] * 2),
    ("error-event-first", "[sim:error 5001]", *[error(502, "upstream_error")] * 2),
    (
        "error-event-midstream",
        "[sim:midstream-error 5001]",
        error(502, "upstream_error"),
        in_band("upstream_error"),
    ),
    ("no-done", "[sim:nodone]", OK, OK),
    ("no-done-no-usage", "[sim:nodone] [sim:nousage]", OK, OK),
]


@pytest.fixture(scope="module")
def shared_sim() -> Iterator[SimulatedTrae]:
    with SimulatedTrae() as simulated:
        yield simulated


@pytest.fixture(scope="module")
def faulty(
    shared_sim: SimulatedTrae, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    """One gateway for the whole matrix: faults are per request, so they cannot interfere."""
    settings = settings_for(
        shared_sim,
        tmp_path_factory.mktemp("faults"),
        upstream_read_timeout=READ_TIMEOUT,
        upstream_retries=1,
    )
    gateway = Gateway(settings).start()
    yield gateway
    gateway.stop()


def expect(outcome: Outcome, expected: tuple[str, int, str | None], case: str) -> None:
    print(f"fault-matrix {case:40} {outcome.brief():40} {outcome.seconds:6.3f}s")
    assert (outcome.kind, outcome.status, outcome.code) == expected
    assert outcome.seconds < BOUND


@pytest.mark.slow
@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize(
    ("directive", "plain", "streamed"),
    [pytest.param(*case[1:], id=case[0]) for case in CASES],
)
def test_fault_matrix(
    faulty: Gateway,
    directive: str,
    plain: tuple[str, int, str | None],
    streamed: tuple[str, int, str | None],
    stream: bool,
    request: pytest.FixtureRequest,
) -> None:
    """Each upstream fault ends in bounded time in the answer shape its timing allows."""
    with faulty.http() as http:
        outcome = chat(http, f"hi {directive}", stream=stream)
    expect(outcome, streamed if stream else plain, request.node.callspec.id)
    if outcome.kind == "ok" and "utf8" not in directive:
        assert outcome.content == ANSWER
    if "utf8" in directive:
        assert "\ufffd" in outcome.content
        assert outcome.content.endswith("You said: hi (turn 0)")


@pytest.mark.slow
@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("which", ["base_url", "refresh_token_url"])
def test_refused_connections(
    sim: SimulatedTrae, tmp_path: Any, which: str, stream: bool, request: pytest.FixtureRequest
) -> None:
    """A closed port for chat or for the token exchange ends in 502 upstream_unreachable."""
    settings = settings_for(
        sim, tmp_path, upstream_read_timeout=READ_TIMEOUT, upstream_retries=1
    ).model_copy(update={which: f"http://127.0.0.1:{free_port()}"})
    gateway = Gateway(settings).start()
    try:
        with gateway.http() as http:
            outcome = chat(http, "hi", stream=stream)
    finally:
        gateway.stop()
    expect(outcome, error(502, "upstream_unreachable"), f"refused-{request.node.callspec.id}")


# The same status and code as the same fault on the chat call (CASES above).
EXCHANGE_CASES = [
    ("http 500", error(502, "upstream_unavailable")),
    ("http 503", error(502, "upstream_unavailable")),
    ("reset", error(502, "upstream_unreachable")),
    ("garbage-json", error(502, "upstream_unavailable")),
    ("stall 5", error(504, "upstream_timeout")),
]


@pytest.mark.slow
@pytest.mark.parametrize(("fault", "expected"), EXCHANGE_CASES, ids=[c[0] for c in EXCHANGE_CASES])
def test_token_exchange_faults(
    sim: SimulatedTrae, start_gateway: Any, fault: str, expected: tuple[str, int, str]
) -> None:
    """A failing token exchange fails requests in bounded time; the next exchange recovers."""
    sim.control.fault(fault, target="exchange", times=-1)
    gateway: Gateway = start_gateway(upstream_read_timeout=READ_TIMEOUT, upstream_retries=1)
    with gateway.http() as http:
        for stream in (False, True):
            outcome = chat(http, "hi", stream=stream)
            mode = "stream" if stream else "plain"
            expect(outcome, expected, f"exchange-{fault.replace(' ', '-')}-{mode}")
        sim.control.clear_faults()
        recovered = chat(http, "hi", stream=False)
    assert (recovered.kind, recovered.content) == ("ok", ANSWER)


def test_fault_admin_api_validates(sim: SimulatedTrae) -> None:
    """/_sim/fault refuses unknown faults and targets, and lists and clears pending ones."""
    with httpx.Client(base_url=sim.url) as http:
        for bad in (
            {"fault": "meltdown"},
            {"fault": "stall", "target": "exchange"},
            {"fault": "reset", "target": "moon"},
            {"fault": "reset", "target": "exchange", "times": 0},
            {"fault": "drip", "times": "2"},
        ):
            assert http.post("/_sim/fault", json=bad).status_code == 400, bad
    pending = sim.control.fault("stall 1", target="exchange", times=2)
    assert pending == [{"target": "exchange", "fault": "stall", "arg": 1.0, "times": 2}]
    sim.control.clear_faults()
    assert sim.control.fault("drip 2") == [
        {"target": "chat", "fault": "drip", "arg": 2.0, "times": 1}
    ]


def test_unknown_fault_directive_is_a_loud_4001(gateway: Gateway) -> None:
    """A typo in a fault directive fails loudly, like other unknown directives."""
    with gateway.http() as http:
        outcome = chat(http, "hi [sim:fault meltdwon]", stream=False)
    assert (outcome.kind, outcome.status, outcome.code) == ("error", 400, "invalid_request")


@pytest.mark.slow
def test_chat_fault_from_the_admin_api(sim: SimulatedTrae, gateway: Gateway) -> None:
    """A directive-free chat fault damages the next answer only."""
    sim.control.fault("reset-midstream", target="chat")
    with gateway.http() as http:
        first = chat(http, "hi", stream=True)
        second = chat(http, "hi", stream=True)
    assert (first.kind, first.code) == ("in-band", "upstream_unreachable")
    assert (second.kind, second.content) == ("ok", ANSWER)


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_one_first_byte_deadline_covers_every_retry(start_gateway: Any, stream: bool) -> None:
    """A stall before headers ends after about one UPSTREAM_READ_TIMEOUT, retries included."""
    gateway: Gateway = start_gateway(upstream_read_timeout=READ_TIMEOUT, upstream_retries=2)
    with gateway.http() as http:
        outcome = chat(http, "hi [sim:fault stall-headers 5]", stream=stream)
    print(f"first-byte deadline {outcome.brief()} {outcome.seconds:6.3f}s")
    assert (outcome.kind, outcome.status, outcome.code) == error(504, "upstream_timeout")
    # Three attempts of READ_TIMEOUT each, plus backoffs, would take over 1.5 s.
    assert outcome.seconds < 3 * READ_TIMEOUT
