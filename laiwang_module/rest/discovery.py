"""`GET /discovery/hash_details`, `POST /discovery/lookup` (MSC2134 over msisdn 3pids), and the
same lookups through the standard Identity Service API v2 at `/_matrix/identity/v2`, so that a
client whose identity server is the homeserver finds acquaintances with no Laiwang code."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from laiwang_module.rest.base import JsonDict, LaiwangResource, Router, Servlet
from laiwang_module.synapse_compat import (
    default_identity_server,
    public_baseurl,
    serves_client_wellknown,
    set_default_identity_server,
)
from rooms.discovery import validate_lookup, validate_openid_credentials

if TYPE_CHECKING:
    from synapse.http.site import SynapseRequest
    from synapse.module_api import ModuleApi

    from laiwang_module.server import LaiwangServer

logger = logging.getLogger(__name__)

# A hash with its quotes and comma is 46 bytes; leave room for the rest of the body.
_BYTES_PER_ADDRESS = 48


class DiscoveryServlet(Servlet):
    def __init__(self, server: LaiwangServer):
        super().__init__(server)
        cap = self.server.config.discovery.max_addresses_per_request
        # A full-size lookup must reach the per-request cap (429), not the body limit (413).
        self.max_body_bytes = max(self.max_body_bytes, cap * _BYTES_PER_ADDRESS + 4096)

    def register(self, router: Router) -> None:
        router.add("GET", "/discovery/hash_details", self.on_hash_details)
        router.add("POST", "/discovery/lookup", self.on_lookup)

    async def on_hash_details(self, request: SynapseRequest) -> tuple[int, JsonDict]:
        await self.auth(request)
        return 200, await self.server.discovery_handler.hash_details()

    async def on_lookup(self, request: SynapseRequest) -> tuple[int, JsonDict]:
        user_id = await self.auth(request)
        lookup = validate_lookup(self.json_body(request))
        result = await self.server.discovery_handler.lookup(user_id, lookup)
        body: JsonDict = {"mappings": result.mappings}
        if result.unreachable_peers is not None:
            body["unreachable_peers"] = result.unreachable_peers
        return 200, body


IDENTITY_SERVICE_PREFIX = "/_matrix/identity"
_IS_V2 = "/v2"


class IdentityServiceServlet(DiscoveryServlet):
    """The Identity Service API v2, for this homeserver's users: status, terms (none), accounts
    by OpenID token, hash_details and lookup. A lookup is the very `DiscoveryHandler.lookup` of
    `POST /discovery/lookup`: same limits, same budget, same address book. Every other identity
    endpoint (validation sessions, binds, invites, keys) answers 404 `M_UNRECOGNIZED`."""

    def register(self, router: Router) -> None:
        router.add("GET", "/versions", self.on_versions)
        router.add("GET", _IS_V2, self.on_status)
        router.add("POST", f"{_IS_V2}/account/register", self.on_register)
        router.add("GET", f"{_IS_V2}/account", self.on_account)
        router.add("POST", f"{_IS_V2}/account/logout", self.on_logout)
        router.add("GET", f"{_IS_V2}/terms", self.on_get_terms)
        router.add("POST", f"{_IS_V2}/terms", self.on_accept_terms)
        router.add("GET", f"{_IS_V2}/hash_details", self.on_hash_details)
        router.add("POST", f"{_IS_V2}/lookup", self.on_lookup)

    @staticmethod
    def identity_token(request: SynapseRequest) -> str | None:
        """The identity server token: `Authorization: Bearer`, or the deprecated
        `access_token` query parameter the spec still allows."""
        header = request.getHeader("Authorization")
        if header is not None:
            scheme, _, token = header.partition(" ")
            return token.strip() if scheme.lower() == "bearer" else None
        return Servlet.query_param(request, "access_token")

    async def auth(self, request: SynapseRequest) -> str:
        return await self.server.discovery_handler.identity_user(self.identity_token(request))

    async def on_versions(self, request: SynapseRequest) -> tuple[int, JsonDict]:
        return 200, {"versions": ["v1.1"]}

    async def on_status(self, request: SynapseRequest) -> tuple[int, JsonDict]:
        return 200, {}

    async def on_register(self, request: SynapseRequest) -> tuple[int, JsonDict]:
        credentials = validate_openid_credentials(self.json_body(request))
        token = await self.server.discovery_handler.register_identity_account(credentials)
        return 200, {"token": token}

    async def on_account(self, request: SynapseRequest) -> tuple[int, JsonDict]:
        return 200, {"user_id": await self.auth(request)}

    async def on_logout(self, request: SynapseRequest) -> tuple[int, JsonDict]:
        await self.auth(request)
        token = self.identity_token(request)
        assert token is not None  # auth passed
        await self.server.discovery_handler.logout_identity(token)
        return 200, {}

    async def on_get_terms(self, request: SynapseRequest) -> tuple[int, JsonDict]:
        # No policies: clients have nothing to accept (the homeserver's own terms apply).
        return 200, {"policies": {}}

    async def on_accept_terms(self, request: SynapseRequest) -> tuple[int, JsonDict]:
        await self.auth(request)
        return 200, {}


def build_identity_service_resource(server: LaiwangServer) -> LaiwangResource:
    router = Router()
    IdentityServiceServlet(server).register(router)
    return LaiwangResource(router, IDENTITY_SERVICE_PREFIX)


def advertise_identity_service(api: ModuleApi) -> None:
    """Name the homeserver itself as `m.identity_server` in its `/.well-known/matrix/client`
    (Synapse's `default_identity_server`, read on every request), unless the admin set one."""
    current = default_identity_server(api)
    own = public_baseurl(api).rstrip("/")
    if current is None:
        set_default_identity_server(api, own)
    elif current.rstrip("/") != own:
        logger.warning(
            "laiwang: default_identity_server is %s, so clients will not look phone numbers up"
            " here; set it to %s (or unset it) to advertise this server's identity API",
            current,
            own,
        )
    if not serves_client_wellknown(api):
        logger.warning(
            "laiwang: Synapse does not serve /.well-known/matrix/client (no public_baseurl):"
            " clients will not find this server's identity API on their own"
        )
