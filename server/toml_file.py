"""The TOML files Parley reads at start (agents, keys): an array of tables, checked whole."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec


class TomlFileError(ValueError):
    """A file that cannot be used; the message names the setting, the file and the spot."""


def read_tables(
    path: str, name: str, where: str, error: type[TomlFileError]
) -> tuple[str, list[dict[str, Any]]]:
    """The file's text and its ``[[name]]`` tables; ``error`` for anything else in it."""
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else str(exc)
        raise error(f"{where}: cannot read it: {reason}") from None
    try:
        document = msgspec.toml.decode(text)
    except msgspec.DecodeError as exc:
        raise error(f"{where}: not valid TOML: {exc}") from None
    unknown = sorted(set(document) - {name})
    if unknown:
        raise error(f"{where}: unknown top-level key {unknown[0]!r}; use [[{name}]]")
    tables = document.get(name, [])
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise error(f"{where}: `{name}` must be an array of tables ([[{name}]])")
    return text, tables
