"""What the model is sent: instructions, then prior turns, then the new input, within budget.

Cancelled and failed exchanges count as far as they produced text: a turn whose reply is
empty is left out whole, so the history never holds two user turns in a row. A turn's named
parameters follow the instructions, one ``name: value`` line each.
"""

from __future__ import annotations

from streams.agents import Agent
from streams.backends.base import Message, ModelRequest
from streams.errors import InvalidInput
from streams.tokens import count_tokens
from streams.types import Exchange


def build_request(
    agent: Agent, history: list[Exchange], user_text: str, parameters: dict[str, str]
) -> ModelRequest:
    budget = agent.context_budget_tokens
    instructions = _with_parameters(agent.instructions, parameters)
    fixed = count_tokens(instructions) + count_tokens(user_text)
    if fixed > budget:
        raise InvalidInput(
            f"needs {fixed} tokens with the instructions; the agent's context budget is {budget}",
            field="input_text",
            code="context_too_large",
            details={"tokens": fixed, "budget": budget},
        )
    turns: list[list[Message]] = []
    used = fixed
    for exchange in reversed(history):
        reply = exchange.reply_text
        if not reply:
            continue
        cost = count_tokens(exchange.input_text) + count_tokens(reply)
        if used + cost > budget:
            break
        used += cost
        turns.append(
            [
                Message(role="user", text=exchange.input_text),
                Message(role="assistant", text=reply),
            ]
        )
    messages = [m for turn in reversed(turns) for m in turn]
    messages.append(Message(role="user", text=user_text))
    return ModelRequest(instructions=instructions, messages=messages, model=agent.model)


def _with_parameters(instructions: str, parameters: dict[str, str]) -> str:
    if not parameters:
        return instructions
    lines = "\n".join(f"{name}: {value}" for name, value in parameters.items())
    head = f"{instructions}\n\n" if instructions else ""
    return f"{head}Parameters:\n{lines}"
