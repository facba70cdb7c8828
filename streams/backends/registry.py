"""Picks the backend for an agent's model provider."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from streams.agents import Agent
from streams.backends.base import Backend
from streams.backends.synthetic import SyntheticBackend
from streams.errors import InvalidInput

BackendMaker = Callable[[Agent], Backend]


class BackendRegistry:
    def __init__(self, makers: Mapping[str, BackendMaker] | None = None) -> None:
        self._makers: dict[str, BackendMaker] = {"synthetic": lambda _agent: SyntheticBackend()}
        self._makers.update(makers or {})

    def for_agent(self, agent: Agent) -> Backend:
        maker = self._makers.get(agent.model.provider)
        if maker is None:
            raise InvalidInput(
                f"model provider {agent.model.provider} is not configured on this server",
                code="provider_unavailable",
            )
        return maker(agent)
