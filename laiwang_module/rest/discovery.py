"""`GET /discovery/hash_details`, `POST /discovery/lookup` (MSC2134 over msisdn 3pids)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from laiwang_module.rest.base import JsonDict, Router, Servlet
from rooms.discovery import validate_lookup

if TYPE_CHECKING:
    from synapse.http.site import SynapseRequest

    from laiwang_module.server import LaiwangServer

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
        mappings = await self.server.discovery_handler.lookup(user_id, lookup)
        return 200, {"mappings": mappings}
