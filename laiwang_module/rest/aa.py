"""AA endpoints: `POST /aa/requests`, `GET /aa/requests/{room_id}/{event_id}`,
`POST …/pay`, `…/close`, `…/remind`, `GET /aa/balances`, `POST /aa/rebuild` (server admins).

Bodies are parsed by the rules of `rooms.aa` into typed values; the handler decides.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from laiwang_module.rest.base import JsonDict, Router, Servlet
from rooms import aa
from rooms.validation import check_event_id, check_room_id, reject_unknown_keys, require_room_id

if TYPE_CHECKING:
    from synapse.http.site import SynapseRequest

    from laiwang_module.handlers.aa import AAHandler


class AAServlet(Servlet):
    def register(self, router: Router) -> None:
        router.add("POST", "/aa/requests", self.on_create)
        router.add("GET", "/aa/requests/{room_id}/{event_id}", self.on_get)
        router.add("POST", "/aa/requests/{room_id}/{event_id}/pay", self.on_pay)
        router.add("POST", "/aa/requests/{room_id}/{event_id}/close", self.on_close)
        router.add("POST", "/aa/requests/{room_id}/{event_id}/remind", self.on_remind)
        router.add("GET", "/aa/balances", self.on_balances)
        router.add("POST", "/aa/rebuild", self.on_rebuild)

    @property
    def _handler(self) -> AAHandler:
        return self.server.aa_handler

    async def on_create(self, request: SynapseRequest) -> tuple[int, JsonDict]:
        user_id = await self.auth(request)
        room_id, bill = aa.parse_request_body(self.json_body(request), user_id)
        return 200, await self._handler.create_request(user_id, room_id, bill)

    async def on_get(
        self, request: SynapseRequest, room_id: str, event_id: str
    ) -> tuple[int, JsonDict]:
        user_id = await self.auth(request)
        room_id, event_id = _ids(room_id, event_id)
        return 200, await self._handler.get_request(user_id, room_id, event_id)

    async def on_pay(
        self, request: SynapseRequest, room_id: str, event_id: str
    ) -> tuple[int, JsonDict]:
        user_id = await self.auth(request)
        room_id, event_id = _ids(room_id, event_id)
        body = aa.parse_pay_body(self.json_body(request))
        return 200, await self._handler.pay(user_id, room_id, event_id, body)

    async def on_close(
        self, request: SynapseRequest, room_id: str, event_id: str
    ) -> tuple[int, JsonDict]:
        user_id = await self.auth(request)
        room_id, event_id = _ids(room_id, event_id)
        self.json_body_or_empty(request)  # a body is optional, but must be JSON when present
        return 200, await self._handler.close(user_id, room_id, event_id)

    async def on_remind(
        self, request: SynapseRequest, room_id: str, event_id: str
    ) -> tuple[int, JsonDict]:
        user_id = await self.auth(request)
        room_id, event_id = _ids(room_id, event_id)
        self.json_body_or_empty(request)  # a body is optional, but must be JSON when present
        return 200, await self._handler.remind(user_id, room_id, event_id)

    async def on_balances(self, request: SynapseRequest) -> tuple[int, JsonDict]:
        user_id = await self.auth(request)
        return 200, await self._handler.balances(user_id)

    async def on_rebuild(self, request: SynapseRequest) -> tuple[int, JsonDict]:
        user_id = await self.auth(request)
        body = self.json_body(request)
        reject_unknown_keys(body, ("room_id",))
        room_id = require_room_id(body, "room_id")
        return 200, await self._handler.rebuild_room(user_id, room_id)


def _ids(room_id: str, event_id: str) -> tuple[str, str]:
    return check_room_id(room_id, "room_id"), check_event_id(event_id, "event_id")
