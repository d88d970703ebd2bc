"""`/timeline`, `/shares/…` and `/feed` endpoints."""

from __future__ import annotations

from typing import TYPE_CHECKING

from laiwang_module.rest.base import JsonDict, Router, Servlet
from rooms import commerce, shares

if TYPE_CHECKING:
    from synapse.http.site import SynapseRequest

    from laiwang_module.handlers.shares import SharesHandler


class SharesServlet(Servlet):
    def register(self, router: Router) -> None:
        router.add("GET", "/timeline", self.on_timeline)
        router.add("POST", "/shares/forward", self.on_forward)
        # Cards from the commerce service (handlers/commerce.py).
        router.add("POST", "/shares/item", self.on_item)
        router.add("POST", "/shares/music", self.on_music)
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
        user_id = await self.auth(request)
        item_request = commerce.parse_item_share_request(self.json_body(request))
        return 200, await self.server.commerce_handler.share_item(user_id, item_request)

    async def on_music(self, request: SynapseRequest) -> tuple[int, JsonDict]:
        user_id = await self.auth(request)
        music_request = commerce.parse_music_share_request(self.json_body(request))
        return 200, await self.server.commerce_handler.share_music(user_id, music_request)

    async def on_feed(self, request: SynapseRequest) -> tuple[int, JsonDict]:
        user_id = await self.auth(request)
        limit = shares.parse_feed_limit(self.query_param(request, "limit"))
        token = self.query_param(request, "from")
        before = shares.decode_cursor(token) if token is not None else None
        return 200, await self._handler.get_feed(user_id, limit, before)
