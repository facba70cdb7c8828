"""Backend makers for the real upstreams: which endpoint and key an agent's model uses.

Rules that keep keys where the operator put them:

- the server-wide key of a provider goes only to the server-wide base URL (or the provider's
  own when none is set); an agent with a base URL of its own gets no server-wide key;
- an agent may name a key variable only under ``PARLEY_UPSTREAM_KEY_``, so whoever creates
  agents cannot have any other variable of the server's environment sent upstream.

A maker never raises: an endpoint that cannot be resolved (say, the key variable was unset
after the agent was created) becomes a backend that fails the exchange with that message.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import get_args

from streams.agents import Agent
from streams.backends.base import Backend, BackendError, Chunk, ModelRequest
from streams.backends.registry import BackendMaker
from streams.backends.upstreams import (
    DEFAULT_BASE_URLS,
    Endpoint,
    UpstreamBackends,
    UpstreamProvider,
    resolve_endpoint,
)

KEY_ENV_PREFIX = "PARLEY_UPSTREAM_KEY_"
KEY_ENV_PATTERN = re.compile(r"^PARLEY_UPSTREAM_KEY_[A-Z0-9_]{1,64}$")
UPSTREAM_PROVIDERS: tuple[UpstreamProvider, ...] = get_args(UpstreamProvider)


@dataclass(frozen=True)
class ProviderDefaults:
    """A provider's server-wide endpoint, from settings. The key never shows in a repr."""

    base_url: str | None = None
    api_key: str | None = field(default=None, repr=False)


def same_url(a: str, b: str) -> bool:
    return a.rstrip("/") == b.rstrip("/")


class UpstreamMakers:
    def __init__(
        self,
        upstreams: UpstreamBackends,
        defaults: Mapping[UpstreamProvider, ProviderDefaults],
        environ: Mapping[str, str],
    ) -> None:
        self._upstreams = upstreams
        self._defaults = defaults
        self._environ = environ

    def endpoint(self, provider: UpstreamProvider, agent: Agent) -> Endpoint:
        """The agent's endpoint; :class:`BackendError` ``upstream_not_configured`` if none."""
        defaults = self._defaults.get(provider, ProviderDefaults())
        server_url = defaults.base_url or DEFAULT_BASE_URLS[provider]
        upstream = agent.upstream
        base_url = upstream.base_url if upstream and upstream.base_url else server_url
        key_env = upstream.api_key_env if upstream else None
        if key_env is not None and not KEY_ENV_PATTERN.match(key_env):
            raise BackendError(
                "upstream_not_configured",
                f"upstream.apiKeyEnv must name a variable {KEY_ENV_PREFIX}<NAME>",
            )
        server_key = defaults.api_key if same_url(base_url, server_url) else None
        endpoint = resolve_endpoint(
            provider,
            base_url=base_url,
            api_key=server_key,
            api_key_env=key_env,
            environ=self._environ,
        )
        if endpoint.api_key is None and same_url(base_url, DEFAULT_BASE_URLS[provider]):
            raise BackendError(
                "upstream_not_configured",
                f"no {provider} API key is configured (PARLEY_{provider.upper()}_API_KEY)",
            )
        return endpoint

    def check(self, agent: Agent) -> None:
        """Raise the maker's error now, if the agent's endpoint cannot be resolved."""
        provider = agent.model.provider
        if provider in UPSTREAM_PROVIDERS:
            self.endpoint(provider, agent)

    def maker(self, provider: UpstreamProvider) -> BackendMaker:
        def make(agent: Agent) -> Backend:
            try:
                return self._upstreams.get(provider, self.endpoint(provider, agent))
            except BackendError as error:
                return FailingBackend(error)

        return make

    def makers(self) -> dict[str, BackendMaker]:
        return {provider: self.maker(provider) for provider in UPSTREAM_PROVIDERS}


class FailingBackend:
    """Fails every exchange with one error, so a misconfigured agent fails like any upstream."""

    def __init__(self, error: BackendError) -> None:
        self._error = error

    async def stream(self, request: ModelRequest) -> AsyncIterator[Chunk]:
        raise BackendError(self._error.code, self._error.message)
        yield Chunk()  # pragma: no cover - makes this an async generator
