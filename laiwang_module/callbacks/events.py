"""The one way features register their `on_new_event` work, and the spam checkers' answer type.

Synapse awaits the `on_new_event` callbacks one after another for each event it notifies, so a
room's events reach each feature in order (a payment after its request, a leave after the join).
Failures are logged here and never raised into Synapse's notifier; each feature's rebuild
repairs a gap.

Seen and left alone: Synapse notifies local events from a task started in the sending request's
logging context (`handlers/message.py`, `run_in_background(_notify)`), so as soon as any module
registers `on_new_event`, Synapse's own reads in that path log "Re-starting finished log
context" once the request has answered. Moving the work to background processes made it worse
(it adds a context switch per event), so the work stays inline.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Literal

from synapse.api.errors import Codes
from synapse.events import EventBase
from synapse.types import StateMap

from laiwang_module import metrics

if TYPE_CHECKING:
    from laiwang_module.server import LaiwangServer

logger = logging.getLogger(__name__)

EventWork = Callable[[EventBase, StateMap[EventBase]], Awaitable[object]]

# What a spam-checker callback answers: NOT_SPAM, or a refusal with its errcode and sentence.
Decision = Literal["NOT_SPAM"] | tuple[Codes, dict[str, Any]]


def register_on_new_event(server: LaiwangServer, feature: str, work: EventWork) -> None:
    async def on_new_event(event: EventBase, state: StateMap[EventBase]) -> None:
        try:
            await work(event, state)
        except Exception:
            metrics.update_failures.labels(feature).inc()
            logger.exception("laiwang %s: failed to handle %s", feature, event.event_id)

    server.api.register_third_party_rules_callbacks(on_new_event=on_new_event)
