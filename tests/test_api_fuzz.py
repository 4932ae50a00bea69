"""Schemathesis over the OpenAPI document of the running server: no input may cause a server error.

Runs last (file order) on the shared deployment, as a senior analyst (the role that can
reach the most endpoints); a second pass without credentials checks every endpoint
refuses cleanly. Both positive (schema-valid) and negative (schema-violating) inputs are
generated for every operation.

Schemathesis' pytest plugin does not run under pytest 9 (it reads a removed private
attribute), so each operation's Hypothesis strategy is driven here directly; every
operation is fuzzed and every failure is collected before the test fails.
"""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from tests.api_server import Deployment

SKIP = {("POST", "/api/v1/auth/logout")}  # would end the shared session mid-run


def _fuzz(dep: Deployment, headers: dict[str, str], examples: int) -> tuple[int, list[str]]:
    schema = schemathesis.openapi.from_url(dep.base + "/api/v1/openapi.json")
    failures: list[str] = []
    done = 0
    for result in schema.get_all_operations():
        op = result.ok()
        if (op.method.upper(), op.full_path) in SKIP:
            continue
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=op.as_strategy(generation_mode=mode))
            @settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck),
                      derandomize=True, database=None)
            def run(case: schemathesis.Case) -> None:
                case.call_and_validate(base_url=dep.base, headers=headers, checks=[not_a_server_error])

            try:
                run()
            except Unsatisfiable:  # nothing to violate (no parameters, no body): only the positive run counts
                continue
            except Exception as exc:
                failures.append(f"{op.method.upper()} {op.full_path} ({mode.value}): {str(exc)[:800]}")
            done += 1
    return done, failures


def test_no_server_errors(api_deployment: Deployment) -> None:
    token = api_deployment.token("senior_a")
    done, failures = _fuzz(api_deployment, {"Authorization": f"Bearer {token}"}, examples=12)
    assert done >= 50, f"only {done} operation × mode runs: the schema lost operations"
    assert not failures, "\n\n".join(failures)


def test_no_server_errors_without_credentials(api_deployment: Deployment) -> None:
    done, failures = _fuzz(api_deployment, {}, examples=3)
    assert done >= 50
    assert not failures, "\n\n".join(failures)
