"""Helpers of the fault and hostile-input suites: one request, classified by what came back.

Every answer must be one of: a well-formed OpenAI completion or stream, an OpenAI error envelope
with a 4xx/5xx status, or (a stream that had started) ``data: {"error": ...}`` then
``data: [DONE]``. Anything else fails the classification with an ``AssertionError``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import httpx
import orjson

ENVELOPE_KEYS = {"message", "type", "param", "code"}


@dataclass(frozen=True)
class Outcome:
    """What a request ended in: ``kind`` is ok, error or in-band; ``seconds`` how long it took."""

    kind: str
    status: int
    code: str | None
    content: str
    seconds: float

    def brief(self) -> str:
        if self.kind == "ok":
            return f"{self.status} ok"
        if self.kind == "error":
            return f"{self.status} {self.code}"
        return f"{self.status} in-band {self.code}"


def check_envelope(body: bytes) -> dict[str, Any]:
    """The ``error`` object of an OpenAI error envelope; fails on anything else."""
    payload = orjson.loads(body)
    assert isinstance(payload, dict), body[:200]
    assert set(payload) == {"error"}, body[:200]
    error = payload["error"]
    assert isinstance(error, dict), body[:200]
    # Errors from a Trae business code also name it (dialect §7): ``trae_code``.
    assert set(error) - {"trae_code"} == ENVELOPE_KEYS, body[:200]
    assert isinstance(error["message"], str), body[:200]
    assert error["message"], body[:200]
    assert isinstance(error["type"], str), body[:200]
    assert error["param"] is None or isinstance(error["param"], str), body[:200]
    assert error["code"] is None or isinstance(error["code"], str), body[:200]
    return error


def classify(status: int, content_type: str, body: bytes, *, stream: bool) -> tuple[str, Any]:
    """``("error", envelope)``, ``("ok", text)`` or ``("in-band", envelope)``."""
    if status != 200:
        assert 400 <= status <= 599, status
        assert content_type.startswith("application/json"), content_type
        return "error", check_envelope(body)
    if not stream:
        completion = orjson.loads(body)
        assert completion["object"] == "chat.completion", body[:200]
        choice = completion["choices"][0]
        assert choice["finish_reason"] in {"stop", "length", "tool_calls", "content_filter"}
        return "ok", choice["message"]["content"] or ""
    assert content_type.startswith("text/event-stream"), content_type
    return _classify_stream(body)


def _classify_stream(body: bytes) -> tuple[str, Any]:
    assert body.endswith(b"\n\n"), body[-200:]
    blocks = [block for block in body.decode().split("\n\n") if block]
    assert blocks[-1] == "data: [DONE]", blocks[-3:]
    chunks = []
    for block in blocks[:-1]:
        if all(line.startswith(":") for line in block.split("\n")):
            continue  # keep-alive and queue comments
        assert block.startswith("data: "), block[:200]
        assert "\n" not in block, block[:200]
        chunks.append(orjson.loads(block[6:]))
    assert chunks, "a stream needs at least one chunk before [DONE]"
    for chunk in chunks[:-1]:
        assert "error" not in chunk, chunk
    text = "".join(
        (c["choices"][0]["delta"].get("content") or "") for c in chunks if c.get("choices")
    )
    last = chunks[-1]
    if "error" in last:
        assert set(last) == {"error"}, last
        check_envelope(orjson.dumps(last))
        return "in-band", last["error"]
    finishes = [c["choices"][0]["finish_reason"] for c in chunks if c.get("choices")]
    assert finishes[-1] in {"stop", "length", "tool_calls", "content_filter"}, finishes
    return "ok", text


def chat(http: httpx.Client, text: str, *, stream: bool, model: str = "gpt-4o") -> Outcome:
    """Send one chat whose last user message is ``text``; classify and time the answer."""
    body = {"model": model, "messages": [{"role": "user", "content": text}], "stream": stream}
    started = time.monotonic()
    with http.stream("POST", "/v1/chat/completions", json=body) as response:
        raw = response.read()
    seconds = time.monotonic() - started
    content_type = response.headers.get("content-type", "")
    kind, detail = classify(response.status_code, content_type, raw, stream=stream)
    code = detail.get("code") if isinstance(detail, dict) else None
    content = detail if isinstance(detail, str) else ""
    return Outcome(kind, response.status_code, code, content, seconds)
