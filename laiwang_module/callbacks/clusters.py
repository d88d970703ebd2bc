"""Clusters as Synapse callbacks.

`on_new_event` keeps the cluster index (members, activity) in step with the rooms and starts the
approval of knocks from acquaintances of local members (in the background: the notifier awaits
this callback, and the approval sends an invite into the same room). Invites by members are
already limited to their acquaintances by the contacts feature's invite policy. The
background-tasks process finishes approvals whose process died between claim and invite.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from synapse.events import EventBase
from synapse.types import StateMap

from laiwang_module.callbacks.events import register_on_new_event

if TYPE_CHECKING:
    from laiwang_module.server import LaiwangServer


class ClustersCallbacks:
    def __init__(self, server: LaiwangServer):
        self._server = server
        self._api = server.api
        self._handler = server.clusters_handler

    def register(self) -> None:
        register_on_new_event(self._server, "clusters", self.on_new_event)
        if self._api.should_run_background_tasks():
            self._api.looping_background_call(
                self._handler.finish_knocks,
                self._server.config.upkeep.retry_interval_ms,
                desc="laiwang_finish_knocks",
            )

    async def on_new_event(self, event: EventBase, state: StateMap[EventBase]) -> None:
        await self._handler.on_event(event, state)
