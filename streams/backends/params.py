"""Agents' ``model.params`` for the upstream providers, importable without their SDKs.

Validating an agent must not load the ``openai`` and ``anthropic`` packages, which take
seconds to import; only the backends themselves need them.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

OPENAI_RESERVED_FIELDS = frozenset({"model", "messages", "stream", "stream_options"})
ANTHROPIC_RESERVED_FIELDS = frozenset({"model", "messages", "stream", "system", "max_tokens"})


class OpenAIChatParams(msgspec.Struct, rename="camel", kw_only=True, forbid_unknown_fields=True):
    """An agent's ``model.params`` for an OpenAI-compatible upstream.

    Unset fields are left out of the request, so the upstream's own defaults apply.
    ``maxOutputTokens`` goes out as ``max_completion_tokens`` (what OpenAI's current models
    accept) unless ``maxTokensField`` says ``max_tokens`` for older compatible servers.
    ``extraBody`` is merged into the request as is, for server-specific fields such as
    vLLM's ``top_k``; it cannot override the fields Parley itself sets.
    """

    temperature: float | None = None
    top_p: float | None = None
    max_output_tokens: int | None = None
    max_tokens_field: Literal["max_completion_tokens", "max_tokens"] = "max_completion_tokens"
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    stop: list[str] | None = None
    seed: int | None = None
    reasoning_effort: str | None = None
    prompt_cache_key: str | None = None
    extra_body: dict[str, Any] = msgspec.field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.max_output_tokens is not None and self.max_output_tokens < 1:
            raise ValueError("maxOutputTokens must be at least 1")
        reserved = sorted(OPENAI_RESERVED_FIELDS & self.extra_body.keys())
        if reserved:
            raise ValueError(f"extraBody cannot set {', '.join(reserved)}")

    @classmethod
    def parse(cls, params: dict[str, Any]) -> OpenAIChatParams:
        return msgspec.convert(params, cls)

    def request_fields(self) -> dict[str, Any]:
        """The Chat Completions fields these params set, ``extraBody`` included."""
        fields: dict[str, Any] = {
            "temperature": self.temperature,
            "top_p": self.top_p,
            "presence_penalty": self.presence_penalty,
            "frequency_penalty": self.frequency_penalty,
            "stop": self.stop,
            "seed": self.seed,
            "reasoning_effort": self.reasoning_effort,
            "prompt_cache_key": self.prompt_cache_key,
            self.max_tokens_field: self.max_output_tokens,
        }
        given = {name: value for name, value in fields.items() if value is not None}
        return given | self.extra_body


class AnthropicParams(msgspec.Struct, rename="camel", kw_only=True, forbid_unknown_fields=True):
    """An agent's ``model.params`` for Anthropic.

    ``maxOutputTokens`` is required by the Messages API, so it has a default.
    ``promptCache`` turns on automatic prompt caching (a top-level ``cache_control``) with
    that time to live. Sampling fields are sent only when set, since newer models may refuse
    them; ``extraBody`` is merged into the request as is (e.g. ``thinking``).
    """

    max_output_tokens: int = 4096
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    stop_sequences: list[str] | None = None
    prompt_cache: Literal["off", "5m", "1h"] = "off"
    extra_body: dict[str, Any] = msgspec.field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.max_output_tokens < 1:
            raise ValueError("maxOutputTokens must be at least 1")
        reserved = sorted(ANTHROPIC_RESERVED_FIELDS & self.extra_body.keys())
        if reserved:
            raise ValueError(f"extraBody cannot set {', '.join(reserved)}")

    @classmethod
    def parse(cls, params: dict[str, Any]) -> AnthropicParams:
        return msgspec.convert(params, cls)

    def request_fields(self) -> dict[str, Any]:
        """The optional Messages fields these params set, ``extraBody`` included."""
        fields: dict[str, Any] = {
            "temperature": self.temperature,
            "top_p": self.top_p,
            "top_k": self.top_k,
            "stop_sequences": self.stop_sequences or None,
        }
        if self.prompt_cache != "off":
            fields["cache_control"] = {"type": "ephemeral", "ttl": self.prompt_cache}
        given = {name: value for name, value in fields.items() if value is not None}
        return given | self.extra_body
