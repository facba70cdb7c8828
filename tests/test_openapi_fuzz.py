"""The OpenAPI document tells the truth: schemathesis, every check on, against a live server.

Each surface is fuzzed on its own paths, positive and negative data, the coverage,
fuzzing and stateful phases, with an admin key given per security scheme. A run is
reproducible: the seed is fixed (PARLEY_FUZZ_SEED picks another) and examples per
operation are bounded (PARLEY_FUZZ_EXAMPLES) so the suite stays within its minutes.

Nothing is switched off, and one check is added (tests/support/fuzz_hooks.py): every
error the run provokes, on every surface, explains itself in a sentence. Where a check must
take one more status from an operation, ``ALLOWANCES`` names the check, the operation, the
status and why.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.servers import REPO_ROOT, ServerProcess, new_key_prefix, start_server

pytestmark = pytest.mark.slow

ADMIN_KEY = "fuzz-admin-key"
SEED = os.environ.get("PARLEY_FUZZ_SEED", "20261202")
EXAMPLES = os.environ.get("PARLEY_FUZZ_EXAMPLES", "20")
SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")

QODER = r"^/(api/v1/cloud|anthropic/v1)/"
# Each surface's paths, as a regular expression over the document's path templates.
SURFACES = {
    "native": r"^/v1/(sessions|agents|keys)(/|$)",
    "palantir": r"^/api/v2/aipAgents/",
    "agno": r"^/(sessions|agents)(/|$)",
    "openviking": r"^/api/v1/sessions(/|$)",
    "sonaops": r"^/v1/(chat|agent)/",
    "qoder": QODER,
}
# Sonaops names nothing in its paths, so no link leads from one operation to another: a
# stateful phase there has nothing to follow (schemathesis calls that an error).
PHASES = {"sonaops": "examples,coverage,fuzzing"}


@dataclass(frozen=True)
class Allowance:
    """Statuses ``check`` also takes from ``method`` ``path`` (a regex), and why.

    ``positive_data_acceptance`` (ST202) wants a schema-valid request accepted;
    ``negative_data_rejection`` (ST201) wants a schema-invalid one refused with a 4xx.
    """

    check: str
    method: str
    path: str
    statuses: tuple[str, ...]
    why: str


ALLOWANCES = [
    Allowance(
        "positive_data_acceptance",
        "POST",
        r"^/v1/agents(/\{agent_id\}/versions)?$",
        ("400",),
        "an agent is checked against this server's providers: an upstream applies only to "
        "providers openai and anthropic, and model.params are each provider's own",
    ),
    Allowance(
        "positive_data_acceptance",
        "GET",
        r"^/v1/sessions/\{conversation_id\}/stream$",
        ("400",),
        "not the server's: schemathesis 4.32's coverage phase sends an empty Last-Event-ID "
        "header with lastEventId=0, which breaks that parameter's pattern, as a positive case "
        "(the family of schemathesis#4592)",
    ),
    Allowance(
        "positive_data_acceptance",
        "POST",
        r"^/api/v2/aipAgents/agents/\{agent_rid\}/sessions/\{session_rid\}/"
        r"(cancel|blockingContinue|streamingContinue)$",
        ("400",),
        "Palantir answers a state clash with 400, as foundry_sdk types it (BadRequestError): "
        "CancelSessionFailedMessageNotInProgress, SessionTraceIdAlreadyExists",
    ),
    Allowance(
        "positive_data_acceptance",
        "DELETE",
        r"^/sessions$",
        ("400",),
        "AgentOS refuses session_ids and session_types of different lengths; JSON Schema "
        "cannot say two arrays have the same length (the body's description does)",
    ),
    Allowance(
        "positive_data_acceptance",
        "GET",
        r"^/api/v1/sessions/\{session_id\}$",
        ("400",),
        "with auto_create=true the id must be one Parley can store; a path parameter's "
        "pattern cannot depend on a query parameter (the description says so)",
    ),
    Allowance(
        "positive_data_acceptance",
        "GET",
        QODER + r"(agents|environments|sessions|sessions/\{session_id\}/events)$",
        ("400",),
        "page, after_id and before_id are exclusive, a 400 when more than one is sent, as "
        "Qoder documents; OpenAPI parameters cannot state that",
    ),
    Allowance(
        "positive_data_acceptance",
        "POST",
        QODER + r"(agents(/\{agent_id\})?|environments/\{environment_id\}"
        r"|sessions(/\{session_id\}/events)?)$",
        ("400",),
        "mcp_servers names must be unique and each used by an mcp_toolset (references between "
        "sibling arrays); changing what is archived is 400 environment_archived, "
        "agent_archived or session_archived, as the anthropic SDK types them",
    ),
    Allowance(
        "not_a_server_error",
        "POST",
        QODER + r"sessions(/\{session_id\}(/events)?)?$",
        ("501",),
        "501 feature_not_available (x-should-retry: false) is Qoder's answer for a feature "
        "Parley does not have (budgets, resources, vaults, tool events); the schema already "
        "refuses those fields, so only schema-invalid requests reach it",
    ),
    Allowance(
        "negative_data_rejection",
        "POST",
        r"^/v1/(chat|agent)/",
        ("200",),
        "Sonaops answers a refused request with HTTP 200 and its envelope (success false, "
        "code 10400), as its own API does; the added check reads those messages",
    ),
    Allowance(
        "negative_data_rejection",
        "GET",
        r"^/v1/(chat|agent)/",
        ("200",),
        "as above, for Sonaops's GET operations",
    ),
]
# Checks that do not apply to a surface, and why. (schemathesis's stateful phase does not
# read a check's per-operation switch, so this is per surface.)
NOT_APPLICABLE = {
    "openviking": (
        "use_after_free",
        "OpenViking answers GET of a deleted (or unknown) session with HTTP 200 and status "
        "'error', as OpenViking 0.3.24 does and its client reads",
    ),
}
# What schemathesis takes by default from each of those checks.
DEFAULTS = {
    "not_a_server_error": ("2XX", "3XX", "4XX"),
    "positive_data_acceptance": ("2XX", "3XX", "401", "403", "404", "409", "429", "5XX"),
    "negative_data_rejection": (
        *("400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "428"),
        *("429", "431", "5XX"),
    ),
}


def config(path: Path) -> Path:
    """A schemathesis.toml: the admin key for each security scheme, then the allowances."""
    lines = [
        "[auth.openapi.bearer]",
        f'bearer = "{ADMIN_KEY}"',
        "[auth.openapi.x-api-key]",
        f'api_key = "{ADMIN_KEY}"',
    ]
    for allowance in ALLOWANCES:
        statuses = [*DEFAULTS[allowance.check], *allowance.statuses]
        lines += [
            "[[operations]]",
            f'include-method = "{allowance.method}"',
            f"include-path-regex = '{allowance.path}'",
            f"[operations.checks.{allowance.check}]",
            f"expected-statuses = {json.dumps(statuses)}",
        ]
    path.write_text("\n".join(lines) + "\n")
    return path


@dataclass
class Fuzzing:
    """One surface's schemathesis run, against a server of its own, its output in a file."""

    server: ServerProcess
    run: subprocess.Popen[bytes]
    output: Path

    def result(self) -> tuple[int, str]:
        code = self.run.wait(timeout=900)
        return code, self.output.read_text(errors="replace")


@pytest.fixture(scope="module")
def fuzzing(
    tmp_path_factory: pytest.TempPathFactory, redis_url: str
) -> Iterator[dict[str, Fuzzing]]:
    """Every surface fuzzed at once: a run mostly waits on its server, so on two cores six
    at a time take about a third of the time one after another would."""
    root = tmp_path_factory.mktemp("fuzz")
    settings = config(root / "schemathesis.toml")
    # Run outside the checkout: schemathesis keeps a cache of past failures in its directory.
    env = {
        **os.environ,
        "SCHEMATHESIS_HOOKS": "tests.support.fuzz_hooks",
        "PYTHONPATH": str(REPO_ROOT),
    }
    runs: dict[str, Fuzzing] = {}
    try:
        for surface in SURFACES:
            server = start_server(
                root / surface,
                redis_url=redis_url,
                key_prefix=new_key_prefix(f"fuzz-{surface}"),
                env={"PARLEY_API_KEYS": f"{ADMIN_KEY}=fuzzer:admin"},
            )
            output = root / f"{surface}.txt"
            with output.open("wb") as sink:
                run = subprocess.Popen(
                    command(surface, server.base_url, settings),
                    stdout=sink,
                    stderr=subprocess.STDOUT,
                    cwd=root,
                    env=env,
                )
            runs[surface] = Fuzzing(server, run, output)
        yield runs
    finally:
        for fuzz in runs.values():
            fuzz.run.kill()
            fuzz.server.terminate()


def command(surface: str, base_url: str, settings: Path) -> list[str]:
    return [
        str(SCHEMATHESIS),
        "--config-file",
        str(settings),
        "run",
        f"{base_url}/schema/openapi.json",
        "--checks",
        "all",
        "--include-path-regex",
        SURFACES[surface],
        "--phases",
        PHASES.get(surface, "examples,coverage,fuzzing,stateful"),
        "--max-examples",
        EXAMPLES,
        "--seed",
        SEED,
        "--generation-database",
        "none",
        "--no-color",
        *(["--exclude-checks", NOT_APPLICABLE[surface][0]] if surface in NOT_APPLICABLE else []),
    ]


@pytest.mark.parametrize("surface", SURFACES)
def test_every_check_passes_on_the_surface(surface: str, fuzzing: dict[str, Fuzzing]) -> None:
    code, output = fuzzing[surface].result()

    generated = re.search(r"(\d+) generated", output)
    print(f"{surface}: {generated[1] if generated else '?'} generated requests")
    assert code == 0, output[-12_000:]
