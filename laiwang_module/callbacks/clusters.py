"""Clusters as Synapse callbacks.

`on_new_event` keeps the cluster index (members, activity) in step with the rooms and starts the
approval of knocks from acquaintances of local members (in the background: the notifier awaits
this callback, and the approval sends an invite into the same room). Invites by members are
already limited to their acquaintances by the acquaintances-only policy's spam-checker callbacks.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from synapse.events import EventBase
from synapse.types import StateMap

if TYPE_CHECKING:
    from laiwang_module.server import LaiwangServer

logger = logging.getLogger(__name__)


def register(server: LaiwangServer) -> None:
    async def on_new_event(event: EventBase, state: StateMap[EventBase]) -> None:
        try:
            await server.cluster_handler.on_event(event, state)
        except Exception:
            # A failure here must not disturb Synapse; the next membership event repairs it.
            logger.exception("laiwang: failed to index cluster event %s", event.event_id)

    server.api.register_third_party_rules_callbacks(on_new_event=on_new_event)
