"""Sharing upstream backends per endpoint, and resolving endpoints without leaking keys."""

from __future__ import annotations

import pytest

from streams.backends.base import BackendError
from streams.backends.upstreams import Endpoint, UpstreamBackends, resolve_endpoint

KEY = "sk-parley-test-SECRET-shared"


async def test_agents_on_one_endpoint_share_one_backend() -> None:
    backends = UpstreamBackends()
    try:
        first = backends.get("openai", Endpoint("http://127.0.0.1:9/v1", KEY))
        again = backends.get("openai", Endpoint("http://127.0.0.1:9/v1/", KEY))
        other_key = backends.get("openai", Endpoint("http://127.0.0.1:9/v1", "sk-other"))
        other_provider = backends.get("anthropic", Endpoint("http://127.0.0.1:9/v1", KEY))
    finally:
        await backends.aclose()

    assert first is again
    assert other_key is not first
    assert other_provider is not first


def test_an_endpoint_never_shows_its_key() -> None:
    endpoint = Endpoint("http://127.0.0.1:9/v1", KEY)

    assert KEY not in repr(endpoint)
    assert KEY not in str(endpoint.identity())


def test_an_agent_key_is_read_from_the_variable_it_names() -> None:
    environ = {"TEAM_OPENAI_KEY": KEY}

    endpoint = resolve_endpoint("openai", api_key_env="TEAM_OPENAI_KEY", environ=environ)

    assert endpoint.api_key == KEY
    assert endpoint.base_url == "https://api.openai.com/v1"


def test_an_unset_key_variable_is_a_clear_error() -> None:
    with pytest.raises(BackendError) as caught:
        resolve_endpoint("anthropic", api_key_env="MISSING_KEY", environ={})

    assert caught.value.code == "upstream_not_configured"
    assert "MISSING_KEY" in caught.value.message


def test_the_server_wide_key_and_base_url_apply_without_agent_overrides() -> None:
    endpoint = resolve_endpoint(
        "openai", base_url="http://localhost:11434/v1", api_key=None, environ={}
    )

    assert endpoint == Endpoint("http://localhost:11434/v1", None)


def test_anthropic_needs_a_key() -> None:
    with pytest.raises(BackendError) as caught:
        resolve_endpoint("anthropic", environ={})

    assert caught.value.code == "upstream_not_configured"
