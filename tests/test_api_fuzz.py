"""Schemathesis over the OpenAPI document of the running server: no input may cause a server error.

Runs last (file order) on the shared deployment, as a senior analyst (the role that can
reach the most endpoints); a second pass without credentials checks every endpoint
refuses cleanly.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from tests.api_server import Deployment

schema = schemathesis.pytest.from_fixture("api_schema")


@pytest.fixture
def api_schema(api_deployment: Deployment) -> schemathesis.BaseSchema:
    s = schemathesis.openapi.from_url(api_deployment.base + "/api/v1/openapi.json")
    return s.exclude(path="/api/v1/auth/logout")


@schema.parametrize()
@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_no_server_errors(case: schemathesis.Case, api_deployment: Deployment) -> None:
    token = api_deployment.token("senior_a")
    case.call_and_validate(base_url=api_deployment.base, headers={"Authorization": f"Bearer {token}"},
                           checks=[not_a_server_error])


@schema.parametrize()
@settings(max_examples=3, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_no_server_errors_without_credentials(case: schemathesis.Case, api_deployment: Deployment) -> None:
    case.call_and_validate(base_url=api_deployment.base, checks=[not_a_server_error])
