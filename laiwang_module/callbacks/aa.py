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

from laiwang_module.callbacks.events import register_on_new_event
from rooms.validation import ValidationError

if TYPE_CHECKING:
    from laiwang_module.server import LaiwangServer

logger = logging.getLogger(__name__)


def register(server: LaiwangServer) -> None:
    handler = server.aa_handler
    api = server.api

    async def check_event_for_spam(event: EventBase) -> str | tuple[Codes, dict[str, Any]]:
        try:
            await handler.check_event(event)
        except ValidationError as e:
            if not api.is_mine(event.sender):
                logger.info("laiwang: refusing federated AA event %s: %s", event.event_id, e)
            return Codes(e.errcode), {"error": f"AA rule: {e.sentence}"}
        return "NOT_SPAM"

    api.register_spam_checker_callbacks(check_event_for_spam=check_event_for_spam)
    register_on_new_event(server, "aa", lambda event, state: handler.apply_event(event))
    api.register_add_extra_fields_to_unsigned_client_event_callbacks(
        add_field_to_unsigned_callback=handler.unsigned_fields
    )
    api.register_cached_function(handler.status_cache.get_aa_status)
