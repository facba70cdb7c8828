"""The README opens with the two set-up commands and lists every setting."""

from __future__ import annotations

import re
from pathlib import Path

from server.settings import ENV_PREFIX, Settings

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def test_the_readme_opens_with_exactly_the_two_setup_commands() -> None:
    first_block = re.search(r"```sh\n(.*?)```", README, re.S)
    assert first_block is not None
    commands = [line.split("#")[0].strip() for line in first_block.group(1).splitlines()]
    assert commands == ["make run", "make test"]


def test_the_readme_documents_every_setting() -> None:
    missing = [
        ENV_PREFIX + name.upper()
        for name in Settings.__struct_fields__
        if f"`{ENV_PREFIX}{name.upper()}`" not in README
    ]
    assert not missing, f"settings missing from the README table: {missing}"
