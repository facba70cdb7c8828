"""The limits every surface enforces on what a session stores, so one rule holds for all.

They raise ``ValueError``: a surface checks them while decoding a request body and answers
in its own envelope.
"""

from __future__ import annotations

import msgspec

MIN_INTERVAL_MS = 50
MAX_INTERVAL_MS = 5000
MAX_METADATA = 16


def check_metadata(value: dict[str, str] | msgspec.UnsetType) -> None:
    if isinstance(value, msgspec.UnsetType):
        return
    if len(value) > MAX_METADATA:
        raise ValueError(f"metadata holds at most {MAX_METADATA} pairs, got {len(value)}")
    for key, item in value.items():
        if not 1 <= len(key) <= 64:
            raise ValueError(f"metadata key {key[:70]!r} must be 1-64 characters")
        if len(item) > 512:
            raise ValueError(f"metadata value of {key!r} is longer than 512 characters")
