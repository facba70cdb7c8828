"""PARLEY_KEYS_FILE and PARLEY_API_KEYS: keys with principals, roles, secrets and limits."""

from __future__ import annotations

from pathlib import Path

import pytest

from server.keyring import Keyring, KeysError, load_keys_file, parse_api_keys
from server.settings import Settings, SettingsError
from streams.quotas import Limits
from tests.support.servers import ServerFactory, ServerStartError

TWO_KEYS = """
# the production key
[[keys]]
key = "sk-live-1"
principal = "acme"
secret = "s3cret"
legacySignature = true
requestsPerSecond = 5
burst = 10
maxConcurrentExchanges = 4
tokenQuota = 1000000

[[keys]]
key = "sk-admin"
principal = "ops"
role = "admin"
"""


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "keys.toml"
    path.write_text(text)
    return str(path)


def test_a_keys_file_gives_each_key_its_principal_role_secret_and_limits(tmp_path: Path) -> None:
    live, admin = load_keys_file(write(tmp_path, TWO_KEYS))

    assert (live.principal, live.role, live.secret, live.legacy_signature) == (
        "acme",
        "user",
        "s3cret",
        True,
    )
    assert (admin.principal, admin.role, admin.secret) == ("ops", "admin", None)
    ring = Keyring([live, admin], Limits(requests_per_second=1, token_quota=50))
    assert ring.limits_of("acme") == Limits(
        requests_per_second=5, burst=10, max_concurrent_exchanges=4, token_quota=1_000_000
    )
    assert ring.limits_of("ops") == Limits(requests_per_second=1, token_quota=50)


def test_a_key_is_found_by_its_exact_value_only(tmp_path: Path) -> None:
    ring = Keyring(load_keys_file(write(tmp_path, TWO_KEYS)), Limits())

    found = ring.find("sk-live-1")

    assert found is not None and found.principal == "acme"
    assert ring.find("sk-live-") is None
    assert ring.find("sk-live-11") is None


def test_a_bad_entry_is_refused_naming_its_line(tmp_path: Path) -> None:
    text = '[[keys]]\nkey = "a"\n\n[[keys]]\nkey = "b"\nburst = "ten"\n'

    with pytest.raises(KeysError, match=r"line 4: burst: expected int, got str$"):
        load_keys_file(write(tmp_path, text))


def test_an_unknown_field_is_refused_naming_it_and_its_line(tmp_path: Path) -> None:
    with pytest.raises(KeysError, match=r"line 1: unknown field rate$"):
        load_keys_file(write(tmp_path, '[[keys]]\nkey = "a"\nrate = 5\n'))


def test_legacy_signatures_need_a_secret(tmp_path: Path) -> None:
    with pytest.raises(KeysError, match="line 1: legacySignature needs a secret"):
        load_keys_file(write(tmp_path, '[[keys]]\nkey = "a"\nlegacySignature = true\n'))


def test_a_negative_limit_is_refused(tmp_path: Path) -> None:
    with pytest.raises(KeysError, match="line 1: tokenQuota must not be negative"):
        load_keys_file(write(tmp_path, '[[keys]]\nkey = "a"\ntokenQuota = -1\n'))


def test_keys_of_one_principal_must_not_ask_for_different_limits(tmp_path: Path) -> None:
    text = '[[keys]]\nkey = "a"\nprincipal = "p"\nburst = 1\n\n'
    text += '[[keys]]\nkey = "b"\nprincipal = "p"\n'

    with pytest.raises(KeysError, match="principal 'p' ask for different limits"):
        Keyring(load_keys_file(write(tmp_path, text)), Limits())


def test_a_file_that_is_not_toml_is_refused(tmp_path: Path) -> None:
    with pytest.raises(KeysError, match="not valid TOML"):
        load_keys_file(write(tmp_path, "[[keys]\nkey = 1"))


def test_api_keys_take_an_admin_role_after_the_principal() -> None:
    bare, named, admin = parse_api_keys("k1, k2=alice, k3=ops:admin")

    assert bare.principal.startswith("key-") and bare.role == "user"
    assert (named.principal, named.role) == ("alice", "user")
    assert (admin.principal, admin.role) == ("ops", "admin")


def test_a_key_never_shows_its_value_or_secret_in_a_repr(tmp_path: Path) -> None:
    live, _ = load_keys_file(write(tmp_path, TWO_KEYS))

    assert "sk-live-1" not in repr(live) and "s3cret" not in repr(live)


def test_a_negative_default_limit_is_a_settings_error() -> None:
    with pytest.raises(SettingsError, match="PARLEY_RATE_LIMIT_PER_SECOND must not be negative"):
        Settings.from_env({"PARLEY_RATE_LIMIT_PER_SECOND": "-1"})


def test_the_server_does_not_start_with_a_bad_keys_file(
    tmp_path: Path, server_factory: ServerFactory
) -> None:
    path = write(tmp_path, '[[keys]]\nkey = "a"\nrole = "root"\n')

    with pytest.raises(ServerStartError, match=r"PARLEY_KEYS_FILE .*line 1: .*role"):
        server_factory({"PARLEY_KEYS_FILE": path})
