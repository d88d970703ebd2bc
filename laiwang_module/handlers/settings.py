"""Per-user settings, with defaults from the module config."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import attr

if TYPE_CHECKING:
    from laiwang_module.server import LaiwangServer
    from rooms.settings import SettingsUpdate


@attr.s(frozen=True, slots=True, auto_attribs=True)
class UserSettings:
    discoverable: bool
    accept_requests_from: str

    def to_json(self) -> dict[str, Any]:
        return {
            "discoverable": self.discoverable,
            "accept_requests_from": self.accept_requests_from,
        }


class SettingsHandler:
    def __init__(self, server: LaiwangServer):
        self._store = server.store
        self._api = server.api
        self._defaults = server.config.defaults

    async def get(self, user_id: str) -> UserSettings:
        """The user's settings, the configured defaults where they kept them."""
        stored = await self._store.get_user_settings(user_id)
        return UserSettings(
            discoverable=stored.get("discoverable", self._defaults.discoverable),
            accept_requests_from=stored.get(
                "accept_requests_from", self._defaults.accept_requests_from
            ),
        )

    async def discoverable_among(self, user_ids: list[str]) -> set[str]:
        """Those of `user_ids` who can be found by phone number (one query for all)."""
        chosen = await self._store.get_discoverable_choices(user_ids)
        return {u for u in user_ids if chosen.get(u, self._defaults.discoverable)}

    async def update(self, user_id: str, update: SettingsUpdate) -> UserSettings:
        """Change the settings given in `update` (the others keep their value); returns all
        settings."""
        changes = update.changes()
        if changes:
            await self._store.update_user_settings(
                user_id, changes, self._api.get_current_time_msec()
            )
        return await self.get(user_id)
