"""Spaces callbacks: `on_new_event` keeps each local user's Laiwang space in step with their
timeline memberships (see the handler; the work is claimed in the database, once)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from synapse.events import EventBase
from synapse.types import StateMap

from laiwang_module.callbacks.events import register_on_new_event

if TYPE_CHECKING:
    from laiwang_module.server import LaiwangServer


class SpacesCallbacks:
    def __init__(self, server: LaiwangServer):
        self._server = server
        self._handler = server.spaces_handler

    def register(self) -> None:
        register_on_new_event(self._server, "spaces", self.on_new_event)

    async def on_new_event(self, event: EventBase, state: StateMap[EventBase]) -> None:
        await self._handler.on_event(event, state)
