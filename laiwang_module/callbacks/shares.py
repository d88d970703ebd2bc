"""Shares callbacks: posting rules and share validation, timeline invites, the feed index.

- `check_event_for_spam` runs for local clients' events (a refusal is a 403/400 with the rule's
  errcode and sentence) and for every federated event (a refusal soft-fails it), so each server
  in a timeline enforces the same rules from `rooms.shares`.
- `federated_user_may_invite` is the only moment this server sees a remote owner's timeline
  invite (no `on_new_event` for out-of-band invites): it schedules the acceptance. It never
  refuses; the contacts feature's invite policy (registered earlier) decides about the invite.
- `on_new_event` indexes posts, reactions and comments (idempotent: keyed by event id).
- The unsigned callback runs for every event served to a client: it returns at once for
  anything but a remote sender's forward, whose verification is cached per event.
- The acquaintance listener keeps timeline membership in step (see the handler).
- The background-tasks process finishes timeline creations whose process died mid-way.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from synapse.api.errors import Codes
from synapse.events import EventBase
from synapse.module_api import NOT_SPAM
from synapse.types import StateMap

from laiwang_module import metrics
from laiwang_module.callbacks.events import Decision, register_on_new_event

if TYPE_CHECKING:
    from laiwang_module.server import LaiwangServer

logger = logging.getLogger(__name__)


class SharesCallbacks:
    def __init__(self, server: LaiwangServer):
        self._server = server
        self._api = server.api
        self._handler = server.shares_handler

    def register(self) -> None:
        self._api.register_spam_checker_callbacks(
            check_event_for_spam=self.check_event_for_spam,
            federated_user_may_invite=self.federated_user_may_invite,
        )
        register_on_new_event(self._server, "shares", self.on_new_event)
        self._api.register_add_extra_fields_to_unsigned_client_event_callbacks(
            add_field_to_unsigned_callback=self.add_field_to_unsigned
        )
        self._api.register_cached_function(self._handler.owner_cache.get_timeline_owner)
        self._server.contacts_handler.add_listener(self._handler.on_acquaintance)
        if self._api.should_run_background_tasks():
            self._api.looping_background_call(
                self._handler.finish_creations,
                self._server.config.upkeep.retry_interval_ms,
                desc="laiwang_finish_timelines",
            )

    async def check_event_for_spam(self, event: EventBase) -> Decision:
        refusal = await self._handler.check_event(event)
        if refusal is None:
            return NOT_SPAM
        errcode, sentence = Codes(refusal[0]), refusal[1]
        local = self._api.is_mine(event.sender)
        if not local:
            logger.info("laiwang: refusing federated event %s: %s", event.event_id, sentence)
        metrics.policy_refusals.labels("share_event", errcode.value, metrics.origin(local)).inc()
        return errcode, {"error": sentence}

    async def federated_user_may_invite(self, event: EventBase) -> Decision:
        try:
            await self._handler.on_federated_invite(event)
        except Exception:
            logger.exception("laiwang: could not schedule accepting %s", event.event_id)
        return NOT_SPAM

    async def on_new_event(self, event: EventBase, state: StateMap[EventBase]) -> None:
        await self._handler.on_event(event, state)

    async def add_field_to_unsigned(self, event: EventBase) -> dict[str, Any]:
        return await self._handler.unsigned_fields(event)
