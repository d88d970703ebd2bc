"""The HTTP layer every endpoint uses: routing, authentication, JSON bodies, Matrix errors.

Resources parse and validate a request into typed values; handlers decide; storage runs SQL. A
servlet callback receives the request and the path parameters and returns `(status, json)`.
Anything it raises becomes a Matrix error here, in one place: a `rooms.errors.LaiwangError` as
its status, errcode and extra fields (400/403/404/405/409/413/429/502/503), a `SynapseError`
(from Synapse itself, e.g. an unknown token) as is, and any other exception as a bare 500
`M_UNKNOWN` (logged by Synapse, never shown to the client).
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, NoReturn
from urllib.parse import unquote

import attr
from synapse.api.errors import SynapseError
from synapse.module_api import DirectServeJsonResource

from laiwang_module import metrics
from rooms.errors import (
    BadJson,
    Forbidden,
    InvalidParam,
    LaiwangError,
    NotJson,
    TooLarge,
    Unrecognized,
)
from rooms.validation import is_ascii_digits

if TYPE_CHECKING:
    from synapse.http.site import SynapseRequest

    from laiwang_module.server import LaiwangServer

logger = logging.getLogger(__name__)

JsonDict = dict[str, Any]
Callback = Callable[..., Awaitable[tuple[int, JsonDict]]]

PREFIX = "/_synapse/client/laiwang/v1"


def to_synapse_error(error: LaiwangError) -> SynapseError:
    """The Matrix error for one of the project's error kinds."""
    return SynapseError(
        error.status, error.sentence, error.errcode, additional_fields=error.extra or None
    )


def _reject_constant(name: str) -> NoReturn:
    # json.loads accepts NaN and Infinity, which are not JSON.
    raise ValueError(f"{name} is not valid JSON")


class _DuplicateKey(Exception):
    pass


def _unique_keys(pairs: list[tuple[str, Any]]) -> JsonDict:
    # json.loads keeps the last of two equal keys; another parser may keep the first, so a
    # body with both is ambiguous: refuse it rather than guess.
    value = dict(pairs)
    if len(value) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(key)
            seen.add(key)
    return value


def _has_lone_surrogate(value: Any) -> bool:
    # json.loads turns "\ud800" into a string UTF-8 cannot encode, and every later step
    # (canonical JSON, the database) would fail on it: a 500. Only \u escapes can make one.
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def parse_json_object(raw: bytes, max_bytes: int) -> JsonDict:
    """Decode a request body that must be one JSON object of at most `max_bytes` bytes."""
    if len(raw) > max_bytes:
        raise TooLarge(f"Request body is larger than {max_bytes} bytes")
    try:
        value = json.loads(
            raw.decode("utf-8"), parse_constant=_reject_constant, object_pairs_hook=_unique_keys
        )
    except _DuplicateKey as e:
        raise BadJson(None, f"Request body has the key {str(e)[:100]!r} more than once") from None
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise NotJson("Request body is not valid JSON") from None
    if b"\\u" in raw and _has_lone_surrogate(value):
        raise NotJson("Request body is not valid JSON: it escapes a lone UTF-16 surrogate")
    if not isinstance(value, dict):
        raise BadJson(None, "Request body must be a JSON object")
    return value


@attr.s(frozen=True, slots=True, auto_attribs=True)
class Route:
    method: str
    template: str  # as registered (`/contacts/{user_id}`): the metrics' endpoint label and
    # the path in openapi.json
    pattern: re.Pattern[str]
    callback: Callback


class Router:
    """Maps `METHOD /path/{param}` templates under PREFIX to callbacks."""

    def __init__(self) -> None:
        self.routes: list[Route] = []

    def add(self, method: str, template: str, callback: Callback) -> None:
        regex = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", template)
        self.routes.append(Route(method, template, re.compile(f"^{regex}$"), callback))

    def match(self, method: str, path: str) -> tuple[Route, dict[str, str]] | None:
        """Returns the route and its URL-decoded parameters; raises 405 for a known path
        with another method, and returns None for an unknown path."""
        matches = [(route, m) for route in self.routes if (m := route.pattern.match(path))]
        # A literal segment wins over a parameter, as in OpenAPI: `DELETE /contacts/import` is
        # a method `/contacts/import` does not have, not the removal of a user "import".
        fewest = min((len(m.groupdict()) for _, m in matches), default=0)
        allowed: list[str] = []
        for route, m in matches:
            if len(m.groupdict()) != fewest:
                continue
            if route.method == method:
                return route, {k: unquote(v) for k, v in m.groupdict().items()}
            allowed.append(route.method)
        if allowed:
            if "GET" in allowed:
                allowed.append("HEAD")  # answered as GET
            raise Unrecognized(
                "Method not allowed",
                status=HTTPStatus.METHOD_NOT_ALLOWED,
                allow=(*sorted(allowed), "OPTIONS"),
            )
        return None


class LaiwangResource(DirectServeJsonResource):
    """A resource registered at `prefix` (PREFIX unless told otherwise); routes to servlets."""

    isLeaf = True

    def __init__(self, router: Router, prefix: str = PREFIX):
        super().__init__()
        self._router = router
        self._prefix = prefix

    async def _async_render(self, request: SynapseRequest) -> tuple[int, Any] | None:
        method = request.method.decode("ascii", errors="replace")
        start = time.perf_counter()
        # An unknown path, a wrong method (405) and a preflight are counted under one label.
        endpoint = metrics.UNRECOGNIZED_ENDPOINT
        status = HTTPStatus.INTERNAL_SERVER_ERROR.value
        try:
            if method == "OPTIONS":  # CORS preflight for web clients
                status = 200
                return 200, {}
            try:
                route, params = self._find(request, "GET" if method == "HEAD" else method)
                endpoint = route.template
                result = await route.callback(request, **params)
            except LaiwangError as e:
                if isinstance(e, Unrecognized) and e.allow:  # RFC 9110: a 405 says what's allowed
                    request.setHeader(b"Allow", ", ".join(e.allow).encode("ascii"))
                raise to_synapse_error(e) from None
            status = result[0]
            return result
        except SynapseError as e:
            status = e.code
            raise
        finally:
            label = method if method in metrics.HTTP_METHODS else "other"
            metrics.http_requests.labels(label, endpoint, str(status)).inc()
            metrics.http_request_duration.labels(label, endpoint).observe(
                time.perf_counter() - start
            )

    def _find(self, request: SynapseRequest, method: str) -> tuple[Route, dict[str, str]]:
        path = request.path.decode("utf-8", errors="replace")
        found = None
        if path.startswith(self._prefix + "/"):
            found = self._router.match(method, path[len(self._prefix) :])
        if found is None:
            raise Unrecognized("Unrecognized request")
        return found


class Servlet:
    """Base of the endpoint classes: authentication and body parsing shared by all."""

    def __init__(self, server: LaiwangServer):
        self.server = server
        self.api = server.api
        self.max_body_bytes: int = server.config.max_body_bytes

    async def auth(self, request: SynapseRequest) -> str:
        """The caller's user id, from their normal Matrix access token."""
        requester = await self.api.get_user_by_req(request)
        return requester.user.to_string()

    async def auth_admin(self, request: SynapseRequest) -> str:
        user_id = await self.auth(request)
        if not await self.api.is_user_admin(user_id):
            raise Forbidden("This endpoint is for server admins.")
        return user_id

    @staticmethod
    def query_param(request: SynapseRequest, name: str) -> str | None:
        """The last value of a query parameter, or None; InvalidParam if it is not UTF-8."""
        values = (request.args or {}).get(name.encode("ascii"))
        if not values:
            return None
        try:
            return values[-1].decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidParam(name, "is not valid UTF-8") from None

    def json_body_or_empty(self, request: SynapseRequest) -> JsonDict:
        """A body that may be empty (then `{}`), for endpoints whose fields are all optional."""
        assert request.content is not None
        if not request.content.read(1):
            return {}
        request.content.seek(0)
        return self.json_body(request)

    def json_body(self, request: SynapseRequest) -> JsonDict:
        declared = request.getHeader("Content-Length")
        if (
            declared is not None
            and is_ascii_digits(declared)
            and (len(declared) > 18 or int(declared) > self.max_body_bytes)
        ):
            raise TooLarge(f"Request body is larger than {self.max_body_bytes} bytes")
        assert request.content is not None
        raw = request.content.read(self.max_body_bytes + 1)
        return parse_json_object(raw, self.max_body_bytes)
