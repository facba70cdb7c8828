"""What the model is sent: instructions, then prior turns, then the new input, within budget.

Cancelled and failed exchanges count as far as they produced text: a turn whose reply is
empty is left out whole, so the history never holds two user turns in a row.
"""

from __future__ import annotations

from streams.agents import Agent
from streams.backends.base import Message, ModelRequest
from streams.errors import InvalidInput
from streams.tokens import count_tokens
from streams.types import Exchange


def build_request(agent: Agent, history: list[Exchange], user_text: str) -> ModelRequest:
    budget = agent.context_budget_tokens
    fixed = count_tokens(agent.instructions) + count_tokens(user_text)
    if fixed > budget:
        raise InvalidInput(
            f"the input needs {fixed} tokens with the instructions; "
            f"the agent's context budget is {budget}",
            code="context_too_large",
            details={"field": "userInput.text", "tokens": fixed, "budget": budget},
        )
    turns: list[list[Message]] = []
    used = fixed
    for exchange in reversed(history):
        reply = exchange.response.text
        if not reply:
            continue
        cost = count_tokens(exchange.user_input.text) + count_tokens(reply)
        if used + cost > budget:
            break
        used += cost
        turns.append(
            [
                Message(role="user", text=exchange.user_input.text),
                Message(role="assistant", text=reply),
            ]
        )
    messages = [m for turn in reversed(turns) for m in turn]
    messages.append(Message(role="user", text=user_text))
    return ModelRequest(instructions=agent.instructions, messages=messages, model=agent.model)
