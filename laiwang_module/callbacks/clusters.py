"""Clusters as Synapse callbacks.

`on_new_event` keeps the cluster index (members, activity) in step with the rooms and starts the
approval of knocks from acquaintances of local members (in the background: the notifier awaits
this callback, and the approval sends an invite into the same room). Invites by members are
already limited to their acquaintances by the acquaintances-only policy's spam-checker callbacks.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from laiwang_module.callbacks.events import register_on_new_event

if TYPE_CHECKING:
    from laiwang_module.server import LaiwangServer

logger = logging.getLogger(__name__)


def register(server: LaiwangServer) -> None:
    register_on_new_event(server, "clusters", server.clusters_handler.on_event)
