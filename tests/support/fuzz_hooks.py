"""A schemathesis check: every error the fuzzer provokes explains itself in a sentence.

Loaded by tests/test_openapi_fuzz.py through ``SCHEMATHESIS_HOOKS``, so it sweeps every
error case the run reaches on every surface, in each surface's own envelope: the 4xx
answers, and Sonaops's business errors (HTTP 200, ``success: false``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import schemathesis

# Where each envelope keeps its words: native, OpenViking and Qoder ``error.message``,
# Sonaops ``message``, Agno ``detail`` (a string, or a list of ``msg``), Palantir
# ``parameters.message`` when it has one.
_WORDS = ("message", "msg", "detail")
# What leaks from code rather than speaks to a person.
_LEAKS = [
    re.compile(r"^'[^' ]*'$"),  # a KeyError's repr: "'data'"
    re.compile(r"Traceback|object at 0x|Error\(|<class "),
    re.compile(r"^\w+$"),  # one bare word
]


@schemathesis.check
def error_messages_are_sentences(ctx: Any, response: Any, case: Any) -> None:
    body = _json(response)
    if body is None or not _is_error(response.status_code, body):
        return
    for message in _messages(body):
        for leak in _LEAKS:
            if leak.search(message):
                raise AssertionError(f"error message is not a sentence: {message!r}")


def _json(response: Any) -> Any:
    if "json" not in (response.headers.get("content-type") or [""])[0]:
        return None
    try:
        return json.loads(response.content)
    except ValueError:
        return None


def _is_error(status: int, body: Any) -> bool:
    if 400 <= status < 500:
        return True
    return isinstance(body, dict) and body.get("success") is False


def _messages(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in _WORDS and isinstance(value, str):
                yield value
            elif key != "input":  # Agno echoes the input it refused
                yield from _messages(value)
    elif isinstance(node, list):
        for item in node:
            yield from _messages(item)
