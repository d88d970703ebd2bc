"""The HTTP layer every endpoint uses: routing, authentication, JSON bodies, Matrix errors.

Resources parse and validate; handlers decide; storage runs SQL. A servlet callback receives the
request and the path parameters and returns `(status, json)`. Anything it raises becomes a Matrix
error: `SynapseError` as is, `rooms.validation.ValidationError` as a 400 with its code, and any
other exception as a bare 500 `M_UNKNOWN` (logged here, never shown to the client).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import attr
from synapse.api.errors import Codes, SynapseError
from synapse.module_api import DirectServeJsonResource

from rooms.validation import ValidationError

if TYPE_CHECKING:
    from synapse.http.site import SynapseRequest

logger = logging.getLogger(__name__)

JsonDict = dict[str, Any]
Callback = Callable[..., Awaitable[tuple[int, JsonDict]]]

PREFIX = "/_synapse/client/laiwang/v1"


def bad_request(errcode: str, message: str, **extra: Any) -> SynapseError:
    return SynapseError(HTTPStatus.BAD_REQUEST, message, errcode, additional_fields=extra or None)


def forbidden(message: str) -> SynapseError:
    return SynapseError(HTTPStatus.FORBIDDEN, message, Codes.FORBIDDEN)


def not_found(message: str) -> SynapseError:
    return SynapseError(HTTPStatus.NOT_FOUND, message, Codes.NOT_FOUND)


def _reject_constant(name: str) -> Any:
    # json.loads accepts NaN and Infinity, which are not JSON.
    raise ValueError(f"{name} is not valid JSON")


def parse_json_object(raw: bytes, max_bytes: int) -> JsonDict:
    """Decode a request body that must be one JSON object of at most `max_bytes` bytes."""
    if len(raw) > max_bytes:
        raise SynapseError(
            HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
            f"Request body is larger than {max_bytes} bytes",
            Codes.TOO_LARGE,
        )
    try:
        value = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise bad_request(Codes.NOT_JSON, "Request body is not valid JSON") from None
    if not isinstance(value, dict):
        raise bad_request(Codes.BAD_JSON, "Request body must be a JSON object")
    return value


@attr.s(frozen=True, slots=True, auto_attribs=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    callback: Callback


class Router:
    """Maps `METHOD /path/{param}` templates under PREFIX to callbacks."""

    def __init__(self) -> None:
        self.routes: list[Route] = []

    def add(self, method: str, template: str, callback: Callback) -> None:
        regex = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", template)
        self.routes.append(Route(method, re.compile(f"^{regex}$"), callback))

    def match(self, method: str, path: str) -> tuple[Route, dict[str, str]] | None:
        """Returns the route and its URL-decoded parameters; raises 405 for a known path
        with another method, and returns None for an unknown path."""
        path_known = False
        for route in self.routes:
            m = route.pattern.match(path)
            if m is None:
                continue
            path_known = True
            if route.method == method:
                return route, {k: unquote(v) for k, v in m.groupdict().items()}
        if path_known:
            raise SynapseError(
                HTTPStatus.METHOD_NOT_ALLOWED, "Method not allowed", Codes.UNRECOGNIZED
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
        method = request.method.decode("ascii")
        if method == "OPTIONS":  # CORS preflight for web clients
            return 200, {}
        if method == "HEAD":
            method = "GET"
        path = request.path.decode("utf-8", errors="replace")
        found = None
        if path.startswith(self._prefix + "/"):
            found = self._router.match(method, path[len(self._prefix) :])
        if found is None:
            raise SynapseError(HTTPStatus.NOT_FOUND, "Unrecognized request", Codes.UNRECOGNIZED)
        route, params = found
        try:
            return await route.callback(request, **params)
        except ValidationError as e:
            raise bad_request(e.errcode, e.sentence) from None


class Servlet:
    """Base of the endpoint classes: authentication and body parsing shared by all."""

    def __init__(self, server: Any):
        # `server` is the LaiwangServer container (typed loosely to avoid an import cycle).
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
            raise forbidden("This endpoint is for server admins.")
        return user_id

    def json_body_or_empty(self, request: SynapseRequest) -> JsonDict:
        """A body that may be empty (then `{}`), for endpoints whose fields are all optional."""
        assert request.content is not None
        if not request.content.read(1):
            return {}
        request.content.seek(0)
        return self.json_body(request)

    def json_body(self, request: SynapseRequest) -> JsonDict:
        declared = request.getHeader("Content-Length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            raise SynapseError(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                f"Request body is larger than {self.max_body_bytes} bytes",
                Codes.TOO_LARGE,
            )
        assert request.content is not None
        raw = request.content.read(self.max_body_bytes + 1)
        return parse_json_object(raw, self.max_body_bytes)
