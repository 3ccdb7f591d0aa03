"""schemathesis against the app's own OpenAPI: at least 100 generated requests per operation, with real parts
behind the app (moto, redis-server, the store). No 5xx for anything a client can send; every response matches
the documented schema, status code and content type."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from functions.api.app import create_app
from tests.conftest import ADMIN_KEY

app = create_app()
schema = schemathesis.openapi.from_asgi("/openapi.json", app)
CHECKS = [not_a_server_error, response_schema_conformance, status_code_conformance, content_type_conformance]


@pytest.fixture
def tenant_key(env: Callable[..., Any], make_tenant: Callable[..., dict[str, str]]) -> str:
    # A high limit: this test is about inputs, not throttling (the rate-limit test covers 429).
    return make_tenant("acme", rate_limit_per_minute=1_000_000)["Authorization"]


@schema.parametrize()
@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True, database=None)
def test_no_server_errors_and_responses_match_the_schema(case: Any, tenant_key: str) -> None:
    auth = f"Bearer {ADMIN_KEY}" if case.path.startswith("/v1/tenants") else tenant_key
    case.call_and_validate(headers={"Authorization": auth}, checks=CHECKS)
