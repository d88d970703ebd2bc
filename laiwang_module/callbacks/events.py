"""The one way features register their `on_new_event` work, the jobs that keep it from drifting,
and the spam checkers' answer type.

Synapse awaits the `on_new_event` callbacks one after another for each event it notifies, so a
room's events reach each feature in order (a payment after its request, a leave after the join).
A failure is never raised into Synapse's notifier: `EventsHandler` records it in the database,
and the background-tasks process retries it from there, with backoff, and reconciles every
feature's index with the rooms at start-up and periodically (handlers/events.py).

Seen and left alone: Synapse notifies local events from a task started in the sending request's
logging context (`handlers/message.py`, `run_in_background(_notify)`), so as soon as any module
registers `on_new_event`, Synapse's own reads in that path log "Re-starting finished log
context" once the request has answered. Moving the work to background processes made it worse
(it adds a context switch per event), so the work stays inline.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from synapse.api.errors import Codes
from synapse.events import EventBase
from synapse.types import StateMap

from laiwang_module.handlers.events import EventWork

if TYPE_CHECKING:
    from laiwang_module.server import LaiwangServer

# What a spam-checker callback answers: NOT_SPAM, or a refusal with its errcode and sentence.
Decision = Literal["NOT_SPAM"] | tuple[Codes, dict[str, Any]]


def register_on_new_event(server: LaiwangServer, feature: str, work: EventWork) -> None:
    handler = server.events_handler
    handler.add(feature, work)

    async def on_new_event(event: EventBase, state: StateMap[EventBase]) -> None:
        await handler.on_new_event(feature, event, state)

    server.api.register_third_party_rules_callbacks(on_new_event=on_new_event)


class EventsCallbacks:
    """The retry and reconcile jobs, on the one background-tasks process."""

    def __init__(self, server: LaiwangServer):
        self._api = server.api
        self._config = server.config.upkeep
        self._handler = server.events_handler

    def register(self) -> None:
        if not self._api.should_run_background_tasks():
            return
        self._api.looping_background_call(
            self._handler.retry_due, self._config.retry_interval_ms, desc="laiwang_retry_updates"
        )
        self._api.run_as_background_process("laiwang_reconcile_start", self._handler.reconcile)
        self._api.looping_background_call(
            self._handler.reconcile, self._config.reconcile_interval_ms, desc="laiwang_reconcile"
        )
