"""Validation of an agent definition beyond its shape: model params, upstream, credentials.

The HTTP body and the agents file check shapes and ranges; this checks what needs the
engine's knowledge: each provider's params struct, and whether the upstream the agent
points at can be reached with a key the server actually has.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import msgspec

from streams.agents import Agent
from streams.backends.base import BackendError
from streams.backends.makers import KEY_ENV_PATTERN, KEY_ENV_PREFIX
from streams.backends.params import AnthropicParams, OpenAIChatParams
from streams.backends.synthetic import SyntheticParams
from streams.errors import InvalidInput

EndpointCheck = Callable[[Agent], None]
_PARAMS: dict[str, Callable[[dict[str, Any]], object]] = {
    "synthetic": SyntheticParams.parse,
    "openai": OpenAIChatParams.parse,
    "anthropic": AnthropicParams.parse,
}


def check_agent(agent: Agent, endpoint_check: EndpointCheck | None = None) -> None:
    """Raise :class:`InvalidInput` naming the field of the first problem found."""
    _check_params(agent)
    _check_upstream(agent)
    if endpoint_check is not None and agent.model.provider != "synthetic":
        try:
            endpoint_check(agent)
        except BackendError as error:
            field = "upstream.apiKeyEnv" if agent.upstream else "model.provider"
            raise InvalidInput(error.message, code=error.code, details={"field": field}) from None


def _check_params(agent: Agent) -> None:
    parse = _PARAMS[agent.model.provider]
    try:
        parse(agent.model.params)
    except (msgspec.ValidationError, ValueError) as error:
        problem, _, path = str(error).partition(" - at `$")
        field = "model.params" + path.rstrip("`")
        raise InvalidInput(f"{problem} (provider {agent.model.provider})", field=field) from None


def _check_upstream(agent: Agent) -> None:
    upstream = agent.upstream
    if upstream is None:
        return
    if agent.model.provider == "synthetic":
        raise InvalidInput("applies only to providers openai and anthropic", field="upstream")
    if upstream.base_url is not None:
        _check_base_url(upstream.base_url)
    if upstream.api_key_env is not None and not KEY_ENV_PATTERN.match(upstream.api_key_env):
        raise InvalidInput(
            f"must name an environment variable {KEY_ENV_PREFIX}<NAME> "
            "(upper-case letters, digits and '_'), not a key",
            field="upstream.apiKeyEnv",
        )


def _check_base_url(url: str) -> None:
    try:
        parts = urlsplit(url)
        port_ok = parts.port is None or parts.port > 0
    except ValueError:
        port_ok = False
        parts = urlsplit("")
    problem = None
    if parts.scheme not in ("http", "https") or not parts.hostname or not port_ok:
        problem = "must be an http:// or https:// URL"
    elif parts.username is not None or parts.password is not None:
        problem = "must not carry credentials; name a key variable in upstream.apiKeyEnv"
    elif parts.query or parts.fragment:
        problem = "must not have a query or fragment"
    if problem:
        raise InvalidInput(problem, field="upstream.baseUrl")
