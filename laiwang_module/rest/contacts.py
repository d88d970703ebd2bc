"""`/contacts…` endpoints: requests, the acquaintance list, import, suggestions, removal."""

from __future__ import annotations

from typing import TYPE_CHECKING

from laiwang_module.rest.base import JsonDict, Router, Servlet
from rooms.contacts import validate_request_body
from rooms.validation import check_user_id

if TYPE_CHECKING:
    from synapse.http.site import SynapseRequest

    from laiwang_module.handlers.contacts import ContactsHandler


class ContactsServlet(Servlet):
    def register(self, router: Router) -> None:
        router.add("GET", "/contacts", self.on_list)
        router.add("POST", "/contacts/requests", self.on_request)
        router.add("GET", "/contacts/requests", self.on_list_requests)
        router.add("POST", "/contacts/import", self.on_import)
        router.add("GET", "/contacts/suggestions", self.on_suggestions)
        router.add("DELETE", "/contacts/{user_id}", self.on_remove)
        router.add("POST", "/admin/contacts/rebuild", self.on_rebuild)

    @property
    def _handler(self) -> ContactsHandler:
        return self.server.contacts_handler

    async def on_list(self, request: SynapseRequest) -> tuple[int, JsonDict]:
        user_id = await self.auth(request)
        return 200, {"contacts": await self._handler.list_contacts(user_id)}

    async def on_request(self, request: SynapseRequest) -> tuple[int, JsonDict]:
        user_id = await self.auth(request)
        target, message = validate_request_body(self.json_body(request), user_id)
        room_id = await self._handler.send_request(user_id, target, message)
        return 200, {"room_id": room_id}

    async def on_list_requests(self, request: SynapseRequest) -> tuple[int, JsonDict]:
        user_id = await self.auth(request)
        return 200, await self._handler.list_requests(user_id)

    async def on_import(self, request: SynapseRequest) -> tuple[int, JsonDict]:
        user_id = await self.auth(request)
        self.json_body_or_empty(request)
        imported, skipped = await self._handler.import_direct_chats(user_id)
        return 200, {"imported": imported, "skipped": skipped}

    async def on_suggestions(self, request: SynapseRequest) -> tuple[int, JsonDict]:
        user_id = await self.auth(request)
        suggestions = await self._handler.suggestions(user_id)
        return 200, {
            "suggestions": [
                {"user_id": s.user_id, "reason": s.reason, "mutual_count": s.mutual_count}
                for s in suggestions
            ]
        }

    async def on_remove(self, request: SynapseRequest, user_id: str) -> tuple[int, JsonDict]:
        caller = await self.auth(request)
        await self._handler.remove(caller, check_user_id(user_id, "user_id"))
        return 200, {}

    async def on_rebuild(self, request: SynapseRequest) -> tuple[int, JsonDict]:
        await self.auth_admin(request)
        return 200, {"rooms": await self._handler.rebuild()}
