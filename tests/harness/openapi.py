"""Conformance of real responses to the module's OpenAPI description.

`MatrixClient` passes every response it gets from a laiwang path through `check_response`, so
the whole end-to-end suite checks that the description says what the server does: the status
must be declared for the operation, and the JSON body must match that status's schema. A path
or method the description does not know must get the router's own 404 / 405 `M_UNRECOGNIZED`.
"""

from __future__ import annotations

import re
from functools import cache
from typing import Any

import attr
import jsonschema
import requests
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from laiwang_module.rest.base import PREFIX
from laiwang_module.rest.msisdn import IDENTITY_PREFIX
from laiwang_module.rest.openapi import load_description

_ROOT = "urn:laiwang:openapi"
_METHODS = ("get", "put", "post", "delete", "patch")
# The identity endpoints answer under IDENTITY_PREFIX/<secret>: the description's server
# variable. Any secret is fine here: a wrong one is an unknown path (404 M_UNRECOGNIZED).
_IDENTITY_RE = re.compile(re.escape(IDENTITY_PREFIX) + r"/[^/]+(?P<rest>/.*)$")


@attr.s(frozen=True, slots=True, auto_attribs=True)
class Operation:
    method: str
    template: str
    pattern: re.Pattern[str]
    pointer: str  # JSON pointer of the operation in the description

    @property
    def label(self) -> str:
        return f"{self.method.upper()} {self.template}"


def _escape(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


@cache
def operations() -> tuple[Operation, ...]:
    found = []
    for template, item in load_description()["paths"].items():
        regex = re.sub(r"\{(\w+)\}", r"[^/]+", template)
        for method in _METHODS:
            if method in item:
                pointer = f"/paths/{_escape(template)}/{method}"
                found.append(Operation(method, template, re.compile(f"^{regex}$"), pointer))
    return tuple(found)


@cache
def _registry() -> Registry:
    resource = Resource.from_contents(load_description(), default_specification=DRAFT202012)
    return Registry().with_resource(_ROOT, resource)


def _resolve(value: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    """A `$ref`'d object of the description and its pointer (None when inline)."""
    ref = value.get("$ref")
    if ref is None:
        return value, None
    assert ref.startswith("#/"), ref
    node: Any = load_description()
    for token in ref[2:].split("/"):
        node = node[token.replace("~1", "/").replace("~0", "~")]
    return node, ref[1:]


def route(path: str) -> str | None:
    """The path as the description writes it (under its server), or None if not the module's.
    Under the identity prefix any secret matches: a wrong one gets the answer of an unknown
    path (see check_response)."""
    if path.startswith(PREFIX + "/"):
        return path[len(PREFIX) :]
    m = _IDENTITY_RE.match(path)
    return m.group("rest") if m else None


def find_operation(method: str, path: str) -> tuple[Operation | None, bool]:
    """The operation for `method path` (a path under the server), and whether the path is known."""
    method = "get" if method.lower() == "head" else method.lower()
    matching = [o for o in operations() if o.pattern.match(path)]
    # A literal segment wins over a parameter (OpenAPI's rule, and the router's).
    fewest = min((o.template.count("{") for o in matching), default=0)
    matching = [o for o in matching if o.template.count("{") == fewest]
    for operation in matching:
        if operation.method == method:
            return operation, True
    return None, bool(matching)


def check_response(method: str, path: str, response: requests.Response) -> None:
    """Raise AssertionError when a response from a laiwang path breaks the description."""
    sub = route(path)
    if sub is None or method.upper() == "OPTIONS":
        return
    label = f"{method.upper()} {path} -> {response.status_code}"
    operation, known = find_operation(method, sub)
    try:
        payload = response.json()
    except ValueError:
        payload = None
    if path.startswith(IDENTITY_PREFIX) and response.status_code == 404:
        if isinstance(payload, dict) and payload.get("errcode") == "M_UNRECOGNIZED":
            return  # a wrong secret: the answer of an unknown path
    if operation is None:
        expected = 405 if known else 404
        assert response.status_code == expected and isinstance(payload, dict), (
            f"{label}: not in openapi.json, so it must be {expected} M_UNRECOGNIZED"
        )
        assert payload.get("errcode") == "M_UNRECOGNIZED", f"{label}: {payload}"
        return
    responses = _resolve(_node(operation.pointer))[0]["responses"]
    status = str(response.status_code)
    assert status in responses, (
        f"{label}: status not declared for {operation.label} in openapi.json "
        f"(declared: {sorted(responses)}); body {payload}"
    )
    declared, pointer = _resolve(responses[status])
    pointer = pointer or f"{operation.pointer}/responses/{status}"
    if "content" not in declared:
        return
    if method.upper() == "HEAD":
        return
    assert payload is not None, f"{label}: the body is not JSON: {response.text[:200]!r}"
    schema = {"$ref": f"{_ROOT}#{pointer}/content/application~1json/schema"}
    validator = jsonschema.Draft202012Validator(schema, registry=_registry())
    errors = sorted(validator.iter_errors(payload), key=lambda e: list(e.absolute_path))
    assert not errors, (
        f"{label}: the body breaks the schema of {operation.label} in openapi.json: "
        f"{errors[0].message} at {list(errors[0].absolute_path)}; body {payload}"
    )


def _node(pointer: str) -> dict[str, Any]:
    return _resolve({"$ref": "#" + pointer})[0]
