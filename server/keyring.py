"""API keys and what each may do: its principal, role, signing secret and limits.

Keys come from ``PARLEY_API_KEYS`` (``key``, ``key=principal``, ``key=principal:admin``) and
from ``PARLEY_KEYS_FILE``, a TOML list of ``[[keys]]`` tables in camelCase like the agents
file. Limits belong to the principal: keys that share one share its bucket and quota, so
they must not ask for different limits.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Sequence
from typing import Any, Literal

import msgspec

from server.toml_file import TomlFileError, read_tables
from streams.quotas import Limits

Role = Literal["user", "admin"]
ANONYMOUS = "anonymous"
_LIMIT_FIELDS = (
    "requests_per_second",
    "burst",
    "max_concurrent_exchanges",
    "token_quota",
    "exchange_quota",
    "quota_window_seconds",
)


class KeysError(TomlFileError):
    pass


class ApiKey(msgspec.Struct, frozen=True, kw_only=True, rename="camel", forbid_unknown_fields=True):
    """One key. Unset limits take the server's defaults (``PARLEY_RATE_LIMIT_*`` and so on)."""

    key: str
    principal: str = ""
    role: Role = "user"
    secret: str | None = None
    legacy_signature: bool = False
    requests_per_second: float | None = None
    burst: int | None = None
    max_concurrent_exchanges: int | None = None
    token_quota: int | None = None
    exchange_quota: int | None = None
    quota_window_seconds: int | None = None

    def __repr__(self) -> str:
        """Keys and secrets never reach a log: a repr names the principal only."""
        return f"ApiKey(principal={self.principal!r}, role={self.role!r})"

    def limits(self, defaults: Limits) -> Limits:
        own = {name: getattr(self, name) for name in _LIMIT_FIELDS}
        return msgspec.structs.replace(
            defaults, **{name: value for name, value in own.items() if value is not None}
        )

    def problem(self) -> str | None:
        """What is wrong with this key, in the words of its fields, or None."""
        if not self.key.strip():
            return "key must not be empty"
        negative = [name for name in _LIMIT_FIELDS if (getattr(self, name) or 0) < 0]
        if negative:
            return f"{_camel(negative[0])} must not be negative"
        if self.legacy_signature and not self.secret:
            return "legacySignature needs a secret"
        return None


ANONYMOUS_KEY = ApiKey(key="", principal=ANONYMOUS)


class Keyring:
    """Every configured key; empty when authentication is off."""

    def __init__(self, keys: Sequence[ApiKey], defaults: Limits) -> None:
        self._keys = [(hashlib.sha256(k.key.encode()).digest(), k) for k in keys]
        self._defaults = defaults
        self._limits = _limits_by_principal(keys, defaults)

    @property
    def enabled(self) -> bool:
        return bool(self._keys)

    def find(self, presented: str) -> ApiKey | None:
        """The key presented, compared in constant time against every key (digests of equal
        length, so neither a key's length nor its first differing byte shows in the time)."""
        digest = hashlib.sha256(presented.encode()).digest()
        found = None
        for known, key in self._keys:
            if hmac.compare_digest(digest, known):
                found = key
        return found

    def limits_of(self, principal: str) -> Limits:
        return self._limits.get(principal, self._defaults)

    def knows(self, principal: str) -> bool:
        return principal in self._limits or (not self._keys and principal == ANONYMOUS)


def _limits_by_principal(keys: Sequence[ApiKey], defaults: Limits) -> dict[str, Limits]:
    limits: dict[str, Limits] = {}
    for key in keys:
        own = key.limits(defaults)
        if limits.setdefault(key.principal, own) != own:
            raise KeysError(
                f"keys of principal {key.principal!r} ask for different limits; limits belong "
                "to the principal, so give them the same ones"
            )
    return limits


def parse_api_keys(value: str) -> list[ApiKey]:
    """``PARLEY_API_KEYS``: comma-separated ``key``, ``key=principal`` or
    ``key=principal:admin``; a bare key's principal is named after its hash."""
    keys = []
    for entry in filter(None, (e.strip() for e in value.split(","))):
        key, _, named = (part.strip() for part in entry.partition("="))
        if not key:
            raise KeysError("PARLEY_API_KEYS has an entry with an empty key")
        principal, role = named, "user"
        head, _, tail = named.rpartition(":")
        if head and tail in ("user", "admin"):
            principal, role = head, tail
        keys.append(
            msgspec.convert(
                {"key": key, "principal": principal or key_principal(key), "role": role}, ApiKey
            )
        )
    return keys


def key_principal(key: str) -> str:
    return "key-" + hashlib.sha256(key.encode()).hexdigest()[:12]


def load_keys_file(path: str) -> list[ApiKey]:
    """``PARLEY_KEYS_FILE``: every ``[[keys]]`` entry; :class:`KeysError` names the line."""
    where = f"PARLEY_KEYS_FILE {path}"
    text, entries = read_tables(path, "keys", where, KeysError)
    lines = [n for n, line in enumerate(text.splitlines(), 1) if _TABLE.match(line)]
    keys = []
    for index, entry in enumerate(entries):
        line = lines[index] if index < len(lines) else 0
        keys.append(_key(entry, f"{where}, line {line}"))
    return keys


_TABLE = re.compile(r"^\s*\[\[\s*keys\s*\]\]")


def _key(entry: dict[str, Any], where: str) -> ApiKey:
    try:
        key = msgspec.convert(entry, ApiKey)
    except msgspec.ValidationError as error:
        raise KeysError(f"{where}: {_readable(error)}") from None
    problem = key.problem()
    if problem:
        raise KeysError(f"{where}: {problem}")
    if not key.principal:
        key = msgspec.structs.replace(key, principal=key_principal(key.key))
    return key


def _readable(error: msgspec.ValidationError) -> str:
    """msgspec's ``Expected `int | null`, got `str` - at `$.burst``` as ``burst: expected
    int, got str``: unset is not a value a file can write."""
    message, _, path = str(error).partition(" - at `$.")
    message = message.replace(" | null", "").replace("`", "").replace("Object contains ", "")
    message = message.replace("Object missing", "missing")
    message = message[0].lower() + message[1:]
    field = path.rstrip("`")
    return f"{field}: {message}" if field else message


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)
