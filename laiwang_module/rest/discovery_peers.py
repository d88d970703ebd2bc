"""The peer side of discovery across servers, for servers in `discovery.peers` only:
`GET /federation/discovery/set`, `POST /federation/discovery/evaluate`,
`POST /federation/discovery/resolve` (under /_synapse/client/laiwang/v1, on the client and
federation listeners). Each request must be signed by the calling server as Matrix federation
requests are (`Authorization: X-Matrix …`); docs/api/discovery.md has the protocol."""

from __future__ import annotations

from typing import TYPE_CHECKING

from laiwang_module.rest.base import JsonDict, Router
from laiwang_module.rest.discovery import DiscoveryServlet
from laiwang_module.synapse_compat import federation_origin
from rooms.discovery_peers import ELEMENT_BYTES, PRF_BYTES, validate_peer_request

if TYPE_CHECKING:
    from synapse.http.site import SynapseRequest


class DiscoveryPeersServlet(DiscoveryServlet):
    """Same body limit as a lookup (a base64 point is as long as a hash)."""

    def register(self, router: Router) -> None:
        router.add("GET", "/federation/discovery/set", self.on_set)
        router.add("POST", "/federation/discovery/evaluate", self.on_evaluate)
        router.add("POST", "/federation/discovery/resolve", self.on_resolve)

    async def on_set(self, request: SynapseRequest) -> tuple[int, JsonDict]:
        origin = await federation_origin(self.api, request, None)
        pepper = self.query_param(request, "pepper")
        return 200, await self.server.discovery_peers_handler.published_set(origin, pepper)

    async def on_evaluate(self, request: SynapseRequest) -> tuple[int, JsonDict]:
        body = self.json_body(request)
        origin = await federation_origin(self.api, request, body)
        peer_request = validate_peer_request(body, origin, ELEMENT_BYTES)
        return 200, await self.server.discovery_peers_handler.evaluate(origin, peer_request)

    async def on_resolve(self, request: SynapseRequest) -> tuple[int, JsonDict]:
        body = self.json_body(request)
        origin = await federation_origin(self.api, request, body)
        peer_request = validate_peer_request(body, origin, PRF_BYTES)
        return 200, await self.server.discovery_peers_handler.resolve(origin, peer_request)
