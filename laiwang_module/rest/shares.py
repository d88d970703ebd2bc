"""`/timeline`, `/shares/…` and `/feed` endpoints."""

from __future__ import annotations

from typing import TYPE_CHECKING

from laiwang_module.rest.base import JsonDict, Router, Servlet
from rooms import shares
from rooms.errors import NotFound

if TYPE_CHECKING:
    from synapse.http.site import SynapseRequest

    from laiwang_module.handlers.shares import SharesHandler


class SharesServlet(Servlet):
    def register(self, router: Router) -> None:
        router.add("GET", "/timeline", self.on_timeline)
        router.add("POST", "/shares/forward", self.on_forward)
        router.add("POST", "/shares/item", self.on_item)
        router.add("GET", "/feed", self.on_feed)

    @property
    def _handler(self) -> SharesHandler:
        return self.server.shares_handler

    async def on_timeline(self, request: SynapseRequest) -> tuple[int, JsonDict]:
        user_id = await self.auth(request)
        return 200, {"room_id": await self._handler.open_timeline(user_id)}

    async def on_forward(self, request: SynapseRequest) -> tuple[int, JsonDict]:
        user_id = await self.auth(request)
        room_id, event_id, comment = shares.parse_forward_request(self.json_body(request))
        return 200, {"event_id": await self._handler.forward(user_id, room_id, event_id, comment)}

    async def on_item(self, request: SynapseRequest) -> tuple[int, JsonDict]:
        await self.auth(request)
        shares.parse_item_request(self.json_body(request))
        # The card is resolved from the commerce service, which the commerce feature brings;
        # until then a valid request gets this answer (and changes nothing).
        if self.server.config.commerce.base_url is None:
            raise NotFound(
                "Shop-item shares need the commerce service: this server has no "
                "commerce.base_url configured."
            )
        raise NotFound("Shop-item shares are not available on this server yet.")

    async def on_feed(self, request: SynapseRequest) -> tuple[int, JsonDict]:
        user_id = await self.auth(request)
        limit = shares.parse_feed_limit(self.query_param(request, "limit"))
        token = self.query_param(request, "from")
        before = shares.decode_cursor(token) if token is not None else None
        return 200, await self._handler.get_feed(user_id, limit, before)
