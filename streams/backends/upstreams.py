"""Builds the real upstream backends and shares one per endpoint.

An SDK client holds a connection pool, so every agent that talks to the same base URL with
the same key shares one backend. Keys come in resolved (from settings, or from the
environment variable an agent names) and live only inside the SDK clients.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, TypeAlias

from streams.backends.base import BackendError
from streams.backends.policy import UpstreamPolicy

if TYPE_CHECKING:
    from streams.backends.anthropic_messages import AnthropicMessagesBackend
    from streams.backends.openai_chat import OpenAIChatBackend

UpstreamProvider = Literal["openai", "anthropic"]
UpstreamBackend: TypeAlias = "OpenAIChatBackend | AnthropicMessagesBackend"
DEFAULT_BASE_URLS: Mapping[UpstreamProvider, str] = {
    "openai": "https://api.openai.com/v1",
    "anthropic": "https://api.anthropic.com",
}


@dataclass(frozen=True)
class Endpoint:
    """Where an upstream lives. The key never shows in a repr, a log line or an error."""

    base_url: str
    api_key: str | None = field(default=None, repr=False)

    def identity(self) -> tuple[str, str]:
        digest = hashlib.sha256((self.api_key or "").encode()).hexdigest()
        return self.base_url.rstrip("/"), digest


def resolve_endpoint(
    provider: UpstreamProvider,
    *,
    base_url: str | None = None,
    api_key: str | None = None,
    api_key_env: str | None = None,
    environ: Mapping[str, str],
) -> Endpoint:
    """The endpoint for an agent: its own base URL or the provider's default, and its key
    read from the environment variable it names, else the server-wide key."""
    if api_key_env is not None:
        api_key = environ.get(api_key_env) or None
        if api_key is None:
            message = f"the environment variable {api_key_env} holding the {provider} key is unset"
            raise BackendError("upstream_not_configured", message)
    if provider == "anthropic" and not api_key:
        raise BackendError("upstream_not_configured", "no Anthropic API key is configured")
    return Endpoint(base_url=base_url or DEFAULT_BASE_URLS[provider], api_key=api_key)


class UpstreamBackends:
    """One backend per (provider, endpoint), made on first use and closed at shutdown."""

    def __init__(self, policy: UpstreamPolicy | None = None) -> None:
        self._policy = policy or UpstreamPolicy()
        self._backends: dict[tuple[str, str, str], UpstreamBackend] = {}

    def get(self, provider: UpstreamProvider, endpoint: Endpoint) -> UpstreamBackend:
        key = (provider, *endpoint.identity())
        backend = self._backends.get(key)
        if backend is None:
            backend = self._make(provider, endpoint)
            self._backends[key] = backend
        return backend

    def _make(self, provider: UpstreamProvider, endpoint: Endpoint) -> UpstreamBackend:
        # The SDKs load here, on first use, so servers without such agents start fast.
        from streams.backends.anthropic_messages import AnthropicMessagesBackend
        from streams.backends.openai_chat import OpenAIChatBackend

        if provider == "openai":
            return OpenAIChatBackend(
                base_url=endpoint.base_url, api_key=endpoint.api_key, policy=self._policy
            )
        return AnthropicMessagesBackend(
            base_url=endpoint.base_url, api_key=endpoint.api_key or "", policy=self._policy
        )

    async def aclose(self) -> None:
        backends, self._backends = list(self._backends.values()), {}
        for backend in backends:
            await backend.aclose()
