"""`/commerce/…` endpoints: the caller's link to a commerce account and their shop
subscriptions (handlers/commerce.py). Item and music cards are under `/shares/…`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from laiwang_module.rest.base import JsonDict, Router, Servlet
from rooms import commerce

if TYPE_CHECKING:
    from synapse.http.site import SynapseRequest

    from laiwang_module.handlers.commerce import CommerceHandler


class CommerceServlet(Servlet):
    def register(self, router: Router) -> None:
        router.add("POST", "/commerce/link", self.on_link)
        router.add("GET", "/commerce/link", self.on_get_link)
        router.add("DELETE", "/commerce/link", self.on_unlink)
        router.add("GET", "/commerce/subscriptions", self.on_subscriptions)
        router.add("PUT", "/commerce/subscriptions/{shop_id}", self.on_subscribe)
        router.add("DELETE", "/commerce/subscriptions/{shop_id}", self.on_unsubscribe)

    @property
    def _handler(self) -> CommerceHandler:
        return self.server.commerce_handler

    async def on_link(self, request: SynapseRequest) -> tuple[int, JsonDict]:
        user_id = await self.auth(request)
        token = commerce.parse_link_body(self.json_body(request))
        return 200, await self._handler.link(user_id, token)

    async def on_get_link(self, request: SynapseRequest) -> tuple[int, JsonDict]:
        user_id = await self.auth(request)
        return 200, await self._handler.get_link(user_id)

    async def on_unlink(self, request: SynapseRequest) -> tuple[int, JsonDict]:
        user_id = await self.auth(request)
        await self._handler.unlink(user_id)
        return 200, {}

    async def on_subscriptions(self, request: SynapseRequest) -> tuple[int, JsonDict]:
        user_id = await self.auth(request)
        return 200, await self._handler.subscriptions(user_id)

    async def on_subscribe(self, request: SynapseRequest, shop_id: str) -> tuple[int, JsonDict]:
        user_id = await self.auth(request)
        return 200, await self._handler.subscribe(user_id, commerce.check_shop_id(shop_id))

    async def on_unsubscribe(self, request: SynapseRequest, shop_id: str) -> tuple[int, JsonDict]:
        user_id = await self.auth(request)
        await self._handler.unsubscribe(user_id, commerce.check_shop_id(shop_id))
        return 200, {}
