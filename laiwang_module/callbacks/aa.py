"""AA callbacks: the event check, the ledger updates and the live status on request events.

- `check_event_for_spam` runs for events of local clients (a refusal is a 403 carrying the
  rule's errcode and sentence) and for every event arriving over federation (a refusal
  soft-fails it: it is kept out of clients' timelines and out of the ledger). It is the one
  guard that covers both, which is why the rules are enforced here and not in
  `check_event_allowed`.
- `on_new_event` runs after an event is persisted, on every worker that notifies it; the ledger
  update is keyed by event id in the database, so it takes effect once.
- The unsigned callback runs for every event served to a client: it returns at once for
  anything but an AA request and reads a cache for those.
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
from rooms import aa
from rooms.errors import LaiwangError

if TYPE_CHECKING:
    from laiwang_module.server import LaiwangServer

logger = logging.getLogger(__name__)


class AACallbacks:
    def __init__(self, server: LaiwangServer):
        self._server = server
        self._api = server.api
        self._handler = server.aa_handler

    def register(self) -> None:
        self._api.register_spam_checker_callbacks(check_event_for_spam=self.check_event_for_spam)
        register_on_new_event(self._server, "aa", self.on_new_event)
        self._api.register_add_extra_fields_to_unsigned_client_event_callbacks(
            add_field_to_unsigned_callback=self.add_field_to_unsigned
        )
        self._api.register_cached_function(self._handler.status_cache.get_aa_status)

    async def check_event_for_spam(self, event: EventBase) -> Decision:
        local = self._api.is_mine(event.sender)
        try:
            msgtype = await self._handler.check_event(event)
        except LaiwangError as e:
            if not local:
                logger.info("laiwang: refusing federated AA event %s: %s", event.event_id, e)
            errcode = Codes(e.errcode)
            metrics.policy_refusals.labels("aa_event", errcode.value, metrics.origin(local)).inc()
            return errcode, {"error": f"AA rule: {e.sentence}"}
        if msgtype is not None:
            # "org.laiwang.aa.request" → "request": a known msgtype (check_known_msgtype).
            kind = msgtype.removeprefix(aa.PREFIX)
            metrics.aa_events.labels(kind, metrics.origin(local)).inc()
        return NOT_SPAM

    async def on_new_event(self, event: EventBase, state: StateMap[EventBase]) -> None:
        await self._handler.apply_event(event)

    async def add_field_to_unsigned(self, event: EventBase) -> dict[str, Any]:
        return await self._handler.unsigned_fields(event)
