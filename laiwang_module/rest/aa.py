"""AA endpoints: `POST /aa/requests`, `GET /aa/requests/{room_id}/{event_id}`,
`POST …/pay`, `…/close`, `…/remind`, `GET /aa/balances`.

Validation and rules live in `rooms.aa`; a rule that forbids (rather than a malformed value)
becomes 403 M_FORBIDDEN, everything else 400 with the rule's errcode.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from laiwang_module.rest.base import JsonDict, Router, Servlet, forbidden
from rooms.aa import Forbidden
from rooms.validation import (
    InvalidParam,
    is_event_id,
    is_room_id,
    reject_unknown_keys,
    require_room_id,
)

if TYPE_CHECKING:
    from synapse.http.site import SynapseRequest


async def _answer(call: Awaitable[JsonDict]) -> tuple[int, JsonDict]:
    try:
        return 200, await call
    except Forbidden as e:
        raise forbidden(e.sentence) from None


def _ids(room_id: str, event_id: str) -> None:
    if not is_room_id(room_id):
        raise InvalidParam("room_id", "must be a Matrix room id like !abc:example.org")
    if not is_event_id(event_id):
        raise InvalidParam("event_id", "must be a Matrix event id")


class AAServlet(Servlet):
    def register(self, router: Router) -> None:
        router.add("POST", "/aa/requests", self.on_create)
        router.add("GET", "/aa/requests/{room_id}/{event_id}", self.on_get)
        for action in ("pay", "close", "remind"):
            router.add(
                "POST", f"/aa/requests/{{room_id}}/{{event_id}}/{action}", self._action(action)
            )
        router.add("GET", "/aa/balances", self.on_balances)
        router.add("POST", "/aa/rebuild", self.on_rebuild)

    @property
    def _handler(self) -> Any:
        return self.server.aa_handler

    async def on_create(self, request: SynapseRequest) -> tuple[int, JsonDict]:
        user_id = await self.auth(request)
        body = self.json_body(request)
        return await _answer(self._handler.create_request(user_id, body))

    async def on_get(
        self, request: SynapseRequest, room_id: str, event_id: str
    ) -> tuple[int, JsonDict]:
        user_id = await self.auth(request)
        _ids(room_id, event_id)
        return await _answer(self._handler.get_request(user_id, room_id, event_id))

    def _action(self, action: str) -> Callable[..., Awaitable[tuple[int, JsonDict]]]:
        async def on_action(
            request: SynapseRequest, room_id: str, event_id: str
        ) -> tuple[int, JsonDict]:
            user_id = await self.auth(request)
            _ids(room_id, event_id)
            if action == "pay":
                body = self.json_body(request)
                return await _answer(self._handler.pay(user_id, room_id, event_id, body))
            if request.content is not None and request.content.read(1):
                request.content.seek(0)
                self.json_body(request)  # a body is optional, but must be JSON when present
            method = self._handler.close if action == "close" else self._handler.remind
            return await _answer(method(user_id, room_id, event_id))

        return on_action

    async def on_balances(self, request: SynapseRequest) -> tuple[int, JsonDict]:
        user_id = await self.auth(request)
        return await _answer(self._handler.balances(user_id))

    async def on_rebuild(self, request: SynapseRequest) -> tuple[int, JsonDict]:
        user_id = await self.auth(request)
        body = self.json_body(request)
        reject_unknown_keys(body, ("room_id",))
        room_id = require_room_id(body, "room_id")
        return await _answer(self._handler.rebuild_room(user_id, room_id))
