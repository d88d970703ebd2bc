"""`GET /settings`, `PUT /settings`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from laiwang_module.rest.base import JsonDict, Router, Servlet
from rooms.settings import validate_settings_update

if TYPE_CHECKING:
    from synapse.http.site import SynapseRequest


class SettingsServlet(Servlet):
    def register(self, router: Router) -> None:
        router.add("GET", "/settings", self.on_get)
        router.add("PUT", "/settings", self.on_put)

    async def on_get(self, request: SynapseRequest) -> tuple[int, JsonDict]:
        user_id = await self.auth(request)
        settings = await self.server.settings_handler.get(user_id)
        return 200, settings.to_json()

    async def on_put(self, request: SynapseRequest) -> tuple[int, JsonDict]:
        user_id = await self.auth(request)
        update = validate_settings_update(self.json_body(request))
        settings = await self.server.settings_handler.update(user_id, update)
        return 200, settings.to_json()
