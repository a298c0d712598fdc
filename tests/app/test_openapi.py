"""The OpenAPI document: it describes every route, and schemathesis finds no server error."""

from __future__ import annotations

import re

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import status_code_conformance

from conftest import make_settings, start_server, stop_server
from taskplaner.openapi import document
from taskplaner.web import create_app


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    running = start_server(make_settings(tmp_path_factory.mktemp("openapi")))
    client = running.login()
    client.post(running.url("/api/v1/items"), json={"title": "seed", "tags": ["seed"]})
    yield running
    stop_server(running)


@pytest.fixture(scope="module")
def api_schema(api):
    return schemathesis.openapi.from_url(api.url("/api/openapi.json"))


def test_every_route_is_documented(api):
    documented = {
        (method.upper(), re.sub(r"\{[^}]+\}", "{}", path))
        for path, ops in document()["paths"].items()
        for method in ops
    }
    for route in create_app(api.services).routes:
        if route.rule.startswith("/ui/") or (
            route.config.get("public")
            and not route.rule.startswith(("/api", "/healthz", "/readyz", "/metrics"))
        ):
            continue  # the web UI's pages, HTML fragments and static files
        rule = re.sub(r"<[^>]+>", "{}", route.rule)
        if rule == "/api/openapi.json":
            continue
        assert (route.method, rule) in documented, f"{route.method} {route.rule} is undocumented"


def test_no_input_makes_a_server_error(api, api_schema):
    """Schemathesis generates requests for every documented operation (its pytest plugin does
    not load under pytest 9, so its strategies are driven with hypothesis directly).

    Each operation gets a fresh API token: the fuzzer also calls DELETE /api/v1/tokens/{id}, and
    a revoked token would turn every later request into a harmless-looking 401."""
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 20
    answered: dict[str, set[int]] = {}
    for operation in operations:
        headers = {"Authorization": f"Bearer {api.services.auth.create_token('fuzz')['token']}"}
        name = f"{operation.method.upper()} {operation.path}"
        statuses = answered.setdefault(name, set())

        def make_check(headers: dict[str, str], statuses: set[int]):  # binds this operation's
            def check(case) -> None:  # token and status set
                response = case.call(headers=headers, timeout=30)
                statuses.add(response.status_code)
                assert response.status_code < 500, (case.method, case.path, response.text[:300])
                # the document and the app agree: every status answered is documented
                case.validate_response(response, checks=[status_code_conformance])
                if response.status_code >= 400 and response.headers.get("Content-Type", "").startswith(
                    "application/json"
                ):
                    assert "error" in response.json()

            return check

        fuzz = settings(
            max_examples=25, deadline=None, database=None, suppress_health_check=list(HealthCheck)
        )
        given(case=operation.as_strategy())(fuzz(make_check(headers, statuses)))()
    reached = [name for name, codes in answered.items() if any(200 <= c < 300 for c in codes)]
    for must in ("GET /api/v1/tags", "GET /api/v1/items", "GET /api/v1/search", "POST /api/v1/items"):
        assert must in reached, f"{must} never answered 2xx: {answered.get(must)}"
