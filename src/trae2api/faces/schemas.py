"""Wire models of the requests we accept (OpenAI's chat spec); validation only, no behaviour.

Unknown fields are allowed (clients send many) and reported by ``unknown_fields``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

ReasoningModeField = Literal["reasoning_content", "think", "drop"]
ReasoningEffortField = Literal[
    "none", "minimal", "low", "medium", "high", "xhigh", "light", "extra_high"
]
MAX_INT32 = 2**31 - 1


class Message(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: str = Field(min_length=1, max_length=64)
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None
    # Sent back by clients that keep the reasoning of earlier turns; accepted, not forwarded.
    reasoning_content: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")

    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    """``POST /v1/chat/completions``: the fields we act on, the rest tolerated."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1, max_length=256)
    messages: list[Message] = Field(min_length=1)
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    n: int | None = Field(default=None, ge=1, le=128)
    stop: str | list[str] | None = None
    # Bounded so that absurd values are a 400, not an integer no JSON encoder will write.
    max_tokens: int | None = Field(default=None, ge=1, le=MAX_INT32)
    max_completion_tokens: int | None = Field(default=None, ge=1, le=MAX_INT32)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    seed: int | None = Field(default=None, ge=-(2**63), le=2**63 - 1)
    user: str | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    # Dialect §7: OpenAI's values, and Trae's own level names.
    reasoning_effort: ReasoningEffortField | None = None
    reasoning_mode: ReasoningModeField | None = Field(
        default=None,
        description="trae2api extension: where reasoning goes for this request "
        "(overrides REASONING_MODE).",
    )

    def unknown_fields(self) -> list[str]:
        return sorted(self.model_extra or {})
