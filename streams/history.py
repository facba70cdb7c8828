"""A session's history as messages: the one rule every surface and the model's context share.

An exchange the model answered holds two messages, the user's and the reply; one that
produced no text (failed at once, cancelled before any text) holds none, so the model never
sees a user turn the model never answered. An imported exchange holds the one message a
client added: a user message (input, no reply) or an assistant message (reply, no input).
Storing imports as exchanges keeps one ordered list per session, so history, paging, expiry
and deletion need nothing new, and every surface lists them where they were added.
"""

from __future__ import annotations

from streams.backends.base import Message
from streams.types import Exchange, HistoryMessage


def messages_of(history: list[Exchange]) -> list[HistoryMessage]:
    """Every message of the finished, not dropped ``history``, oldest first."""
    found: list[HistoryMessage] = []
    for x in history:
        if not x.imported and not x.reply_text:
            continue
        if x.input_text:
            found.append(
                HistoryMessage(
                    exchange_id=x.exchange_id,
                    role="user",
                    text=x.input_text,
                    created_ms=x.created_ms,
                )
            )
        if x.reply_text:
            done = x.completed_ms or x.created_ms
            found.append(
                HistoryMessage(
                    exchange_id=x.exchange_id, role="assistant", text=x.reply_text, created_ms=done
                )
            )
    return found


def merged(messages: list[Message]) -> list[Message]:
    """Consecutive messages of one role joined into one turn, since chat APIs want turns to
    alternate (two imported user messages in a row, or one before the new input)."""
    turns: list[Message] = []
    for m in messages:
        if turns and turns[-1].role == m.role:
            turns[-1] = Message(role=m.role, text=f"{turns[-1].text}\n\n{m.text}")
        else:
            turns.append(m)
    return turns
