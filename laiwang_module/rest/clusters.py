"""`/clusters…` endpoints: create, list, discover, join by asking, the invitation tree."""

from __future__ import annotations

from typing import TYPE_CHECKING

from laiwang_module.rest.base import JsonDict, Router, Servlet
from rooms.clusters import validate_create_body, validate_join_body, validate_limit
from rooms.validation import check_room_id

if TYPE_CHECKING:
    from synapse.http.site import SynapseRequest

    from laiwang_module.handlers.clusters import ClustersHandler


class ClustersServlet(Servlet):
    def register(self, router: Router) -> None:
        router.add("POST", "/clusters", self.on_create)
        router.add("GET", "/clusters", self.on_list)
        router.add("GET", "/clusters/discover", self.on_discover)
        router.add("POST", "/clusters/{room_id}/join", self.on_join)
        router.add("GET", "/clusters/{room_id}/tree", self.on_tree)

    @property
    def _handler(self) -> ClustersHandler:
        return self.server.clusters_handler

    async def on_create(self, request: SynapseRequest) -> tuple[int, JsonDict]:
        user_id = await self.auth(request)
        topic, invitees = validate_create_body(self.json_body(request), user_id)
        room_id, failures = await self._handler.create(user_id, topic, invitees)
        body: JsonDict = {"room_id": room_id}
        if failures:
            body["invite_failures"] = failures
        return 200, body

    async def on_list(self, request: SynapseRequest) -> tuple[int, JsonDict]:
        user_id = await self.auth(request)
        return 200, {"clusters": await self._handler.list_mine(user_id)}

    async def on_discover(self, request: SynapseRequest) -> tuple[int, JsonDict]:
        user_id = await self.auth(request)
        limit = validate_limit(self.query_param(request, "limit"))
        return 200, {"clusters": await self._handler.discover(user_id, limit)}

    async def on_join(self, request: SynapseRequest, room_id: str) -> tuple[int, JsonDict]:
        user_id = await self.auth(request)
        room_id = check_room_id(room_id, "room_id")
        via = validate_join_body(self.json_body_or_empty(request))
        return 200, {"room_id": await self._handler.join(user_id, room_id, via)}

    async def on_tree(self, request: SynapseRequest, room_id: str) -> tuple[int, JsonDict]:
        user_id = await self.auth(request)
        tree = await self._handler.tree(user_id, check_room_id(room_id, "room_id"))
        return 200, tree.to_json()
