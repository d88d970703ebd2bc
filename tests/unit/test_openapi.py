"""The OpenAPI description (laiwang_module/rest/openapi.json): valid OpenAPI 3.1, and exactly
the routes the module registers."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from openapi_spec_validator import validate

from laiwang_module.config import parse_config
from laiwang_module.rest import SERVLETS
from laiwang_module.rest.base import Router
from laiwang_module.rest.msisdn import MsisdnServlet
from laiwang_module.rest.openapi import load_description
from tests.harness.openapi import find_operation, operations

METHODS = ("get", "put", "post", "delete", "patch")


def registered_routes() -> set[tuple[str, str]]:
    server: Any = SimpleNamespace(api=None, config=parse_config({}))
    router = Router()
    for servlet_class in (*SERVLETS, MsisdnServlet):
        servlet_class(server).register(router)
    return {(route.method, route.template) for route in router.routes}


def described_routes() -> set[tuple[str, str]]:
    return {
        (method.upper(), template)
        for template, item in load_description()["paths"].items()
        for method in METHODS
        if method in item
    }


def test_description_is_valid_openapi_3_1() -> None:
    description = load_description()
    assert description["openapi"].startswith("3.1.")
    validate(description)  # raises on any violation of the OpenAPI 3.1 schema


def test_every_route_is_described_and_nothing_else() -> None:
    registered, described = registered_routes(), described_routes()
    assert registered - described == set(), "routes missing from openapi.json"
    assert described - registered == set(), "openapi.json describes routes nobody serves"
    assert len(registered) == 39


def test_operations_are_unique_and_authenticated_unless_public() -> None:
    description = load_description()
    ids = [description["paths"][o.template][o.method]["operationId"] for o in operations()]
    assert len(ids) == len(set(ids))
    public = {
        o.label
        for o in operations()
        if description["paths"][o.template][o.method].get("security") == []
    }
    assert public == {
        "GET /openapi.json",
        "POST /_matrix/identity/api/v1/validate/msisdn/requestToken",
        "POST /_matrix/identity/api/v1/validate/msisdn/submitToken",
        "GET /_matrix/identity/api/v1/3pid/getValidated3pid",
    }
    assert description["security"] == [{"accessToken": []}]
    assert description["components"]["securitySchemes"]["accessToken"]["scheme"] == "bearer"


def test_every_operation_declares_its_errors_with_the_matrix_error_object() -> None:
    description = load_description()
    for o in operations():
        responses = description["paths"][o.template][o.method]["responses"]
        assert "500" not in responses, o.label  # a 500 is a bug, never part of the contract
        for status, response in responses.items():
            if status.startswith(("4", "5")):
                name = response["$ref"].rsplit("/", 1)[1]
                schema = description["components"]["responses"][name]["content"][
                    "application/json"
                ]["schema"]
                assert schema["allOf"][0] == {"$ref": "#/components/schemas/Error"}, o.label
        operation = description["paths"][o.template][o.method]
        if "requestBody" in operation:  # a body can be bad or too large
            assert {"400", "413"} <= set(responses), o.label
        if "{" in o.template:  # so can a path parameter
            assert "400" in responses, o.label
    limit = description["components"]["responses"]["LimitExceeded"]["content"]
    assert limit["application/json"]["schema"]["allOf"][1]["required"] == ["retry_after_ms"]


@pytest.mark.parametrize(
    ("method", "path", "expected", "known"),
    [
        ("GET", "/clusters/%21a%3Ahs/tree", "/clusters/{room_id}/tree", True),
        ("HEAD", "/settings", "/settings", True),
        ("GET", "/clusters/discover", "/clusters/discover", True),
        ("DELETE", "/settings", None, True),
        ("DELETE", "/contacts/import", None, True),
        ("DELETE", "/contacts/%40a%3Ahs", "/contacts/{user_id}", True),
        ("GET", "/nowhere", None, False),
    ],
)
def test_find_operation(method: str, path: str, expected: str | None, known: bool) -> None:
    operation, path_known = find_operation(method, path)
    assert (operation.template if operation else None, path_known) == (expected, known)
