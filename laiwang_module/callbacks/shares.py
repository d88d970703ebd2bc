"""Shares callbacks: posting rules and share validation, timeline invites, the feed index.

- `check_event_for_spam` runs for local clients' events (a refusal is a 403/400 with the rule's
  errcode and sentence) and for every federated event (a refusal soft-fails it), so each server
  in a timeline enforces the same rules from `rooms.shares`.
- `federated_user_may_invite` is the only moment this server sees a remote owner's timeline
  invite (no `on_new_event` for out-of-band invites): it schedules the acceptance. It never
  refuses; the acquaintances-only policy (registered earlier) decides about the invite.
- `on_new_event` indexes posts, reactions and comments (idempotent: keyed by event id).
- The acquaintance listener keeps timeline membership in step (see the handler).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Literal

from synapse.api.errors import Codes
from synapse.events import EventBase
from synapse.module_api import NOT_SPAM

from laiwang_module.callbacks.events import register_on_new_event

if TYPE_CHECKING:
    from laiwang_module.server import LaiwangServer

logger = logging.getLogger(__name__)


def register(server: LaiwangServer) -> None:
    handler = server.shares_handler
    api = server.api

    async def check_event_for_spam(event: EventBase) -> str | tuple[Codes, dict[str, Any]]:
        refusal = await handler.check_event(event)
        if refusal is None:
            return NOT_SPAM
        errcode, sentence = refusal
        if not api.is_mine(event.sender):
            logger.info("laiwang: refusing federated event %s: %s", event.event_id, sentence)
        return Codes(errcode), {"error": sentence}

    async def federated_user_may_invite(event: EventBase) -> Literal["NOT_SPAM"]:
        try:
            await handler.on_federated_invite(event)
        except Exception:
            logger.exception("laiwang: could not schedule accepting %s", event.event_id)
        return NOT_SPAM

    api.register_spam_checker_callbacks(
        check_event_for_spam=check_event_for_spam,
        federated_user_may_invite=federated_user_may_invite,
    )
    register_on_new_event(server, "shares", handler.on_event)
    api.register_cached_function(handler.owner_cache.get_timeline_owner)
    server.contacts_handler.add_listener(handler.on_acquaintance)
