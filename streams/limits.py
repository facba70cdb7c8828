"""The limits every surface enforces on what a session stores, so one rule holds for all.

They raise ``ValueError``: a surface checks them while decoding a request body and answers
in its own envelope. The Annotated types carry theirs as msgspec constraints, so a wire
Struct that uses one refuses a bad value while decoding and states the rule in its schema.
Where a check's own message says more (it names the value), the type only describes the
rule in its schema (``extra_json_schema``) and the check enforces it.
"""

from __future__ import annotations

import re
from typing import Annotated

import msgspec

# The engine's ids (sessions, agents, exchanges): what ``service.check_id`` takes. Every
# surface states its ids with these, so one rule holds for all.
ID = r"[A-Za-z0-9_-]{1,64}"
ID_RULE = "1-64 characters of letters, digits, '-' or '_'"
# ``(?![\s\S])`` is the end of the text in Python and JSON Schema alike (``$`` would let a
# final line break through in Python).
END = r"(?![\s\S])"
# Text with something besides whitespace: Python's ``\s`` is ``str.isspace``, the rule the
# service checks with ``str.strip``.
NOT_BLANK = r"\S"
MIN_INTERVAL_MS = 50
MAX_INTERVAL_MS = 5000
MAX_METADATA = 16
MAX_TITLE = 200
MAX_USER_ID = 128
# Text without C0 control characters or DEL: NUL and line breaks have no place in a name.
NO_CONTROLS = r"^[^\x00-\x1f\x7f]*" + END
CONTROLS_MESSAGE = "must not contain control characters such as NUL or line breaks"

Title = Annotated[
    str,
    msgspec.Meta(
        max_length=MAX_TITLE,
        pattern=NO_CONTROLS,
        description=f"Up to {MAX_TITLE} characters, no control characters.",
    ),
]
UserId = Annotated[
    str,
    msgspec.Meta(
        max_length=MAX_USER_ID,
        pattern=NO_CONTROLS,
        description=f"Up to {MAX_USER_ID} characters, no control characters.",
    ),
]
Interval = Annotated[
    int,
    msgspec.Meta(
        description=f"Refresh interval in ms, {MIN_INTERVAL_MS}-{MAX_INTERVAL_MS}.",
        extra_json_schema={"minimum": MIN_INTERVAL_MS, "maximum": MAX_INTERVAL_MS},
    ),
]
# msgspec writes a dict's ``additionalProperties`` from its value type, so the value's rule
# rides on the value.
_MetadataValue = Annotated[str, msgspec.Meta(extra_json_schema={"maxLength": 512})]
Metadata = Annotated[
    dict[str, _MetadataValue],
    msgspec.Meta(
        description=f"Up to {MAX_METADATA} string pairs; keys 1-64, values up to 512 chars.",
        extra_json_schema={
            "maxProperties": MAX_METADATA,
            "propertyNames": {"minLength": 1, "maxLength": 64, "pattern": NO_CONTROLS},
        },
    ),
]
InputText = Annotated[
    str,
    msgspec.Meta(
        description="The user's turn: not blank.",
        extra_json_schema={"minLength": 1, "pattern": NOT_BLANK},
    ),
]
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def has_controls(value: str) -> bool:
    return _CONTROL.search(value) is not None


def check_user_id(value: str, field: str) -> None:
    """For a user id that does not come through a wire Struct (a header, a form field)."""
    if len(value) > MAX_USER_ID:
        raise ValueError(f"{field} must be at most {MAX_USER_ID} characters")
    if has_controls(value):
        raise ValueError(f"{field} {CONTROLS_MESSAGE}")


def check_metadata(value: dict[str, str] | msgspec.UnsetType) -> None:
    if isinstance(value, msgspec.UnsetType):
        return
    if len(value) > MAX_METADATA:
        raise ValueError(f"metadata holds at most {MAX_METADATA} pairs, got {len(value)}")
    for key, item in value.items():
        if not 1 <= len(key) <= 64:
            raise ValueError(f"metadata key {key[:70]!r} must be 1-64 characters")
        if has_controls(key):
            raise ValueError(f"metadata key {key!r} {CONTROLS_MESSAGE}")
        if len(item) > 512:
            raise ValueError(f"metadata value of {key!r} is longer than 512 characters")
