"""The acquaintances-only policy and the acquaintance index, as Synapse callbacks.

- `user_may_invite` (local inviters) and `federated_user_may_invite` (remote inviters) refuse
  invites of local users by strangers; `user_may_create_room` refuses a /createRoom that would.
- `check_username_for_spam` hides strangers from the user directory.
- `on_new_event` keeps the acquaintance index in step with membership (idempotent, see handler).

No presence router: Synapse's router can only add recipients to those who share a room, and
acquaintances always share their contact room, so it would cost a query per presence update and
per sync for nothing. See docs/api/contacts.md.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from synapse.api.errors import Codes
from synapse.events import EventBase
from synapse.module_api import NOT_SPAM, UserProfile
from synapse.types import StateMap

from laiwang_module import metrics
from laiwang_module.callbacks.events import Decision, register_on_new_event
from laiwang_module.handlers.contacts import InviteRefusal, known_request
from rooms.contacts import (
    ACQUAINTANCE_STATE,
    Acquaintance,
    find_in_initial_state,
    find_in_stripped_state,
    parse_acquaintance,
)

if TYPE_CHECKING:
    from laiwang_module.server import LaiwangServer

logger = logging.getLogger(__name__)


def _refuse(check: str, refusal: InviteRefusal, *, local: bool) -> tuple[Codes, dict[str, Any]]:
    metrics.policy_refusals.labels(check, refusal.kind, metrics.origin(local)).inc()
    return Codes.FORBIDDEN, {"error": refusal.sentence}


class ContactsCallbacks:
    def __init__(self, server: LaiwangServer):
        self._server = server
        self._api = server.api
        self._handler = server.contacts_handler

    def register(self) -> None:
        self._api.register_cached_function(self._handler.cache.are_acquainted)
        self._api.register_spam_checker_callbacks(
            user_may_invite=self.user_may_invite,
            federated_user_may_invite=self.federated_user_may_invite,
            user_may_create_room=self.user_may_create_room,
            check_username_for_spam=self.check_username_for_spam,
        )
        register_on_new_event(self._server, "contacts", self.on_new_event)

    async def user_may_invite(self, inviter: str, invitee: str, room_id: str) -> Decision:
        if not self._api.is_mine(inviter):
            # Synapse calls this after federated_user_may_invite, which already decided with
            # the invite's stripped state; this server may not have the room's state at all.
            return NOT_SPAM
        start = time.perf_counter()

        async def room_request() -> Acquaintance | None:
            state = await self._api.get_room_state(room_id, [(ACQUAINTANCE_STATE, "")])
            event = state.get((ACQUAINTANCE_STATE, ""))
            return parse_acquaintance(event.content) if event is not None else None

        refusal = await self._handler.invite_refusal(inviter, invitee, room_request)
        # bench/policy_bench.py reads this line: the policy's own time, without Synapse's.
        logger.debug(
            "invite policy %s -> %s: %s in %.3f ms",
            inviter,
            invitee,
            "allowed" if refusal is None else "refused",
            (time.perf_counter() - start) * 1000,
        )
        return NOT_SPAM if refusal is None else _refuse("invite", refusal, local=True)

    async def federated_user_may_invite(self, event: EventBase) -> Decision:
        assert event.state_key is not None
        acquaintance = find_in_stripped_state(event.unsigned.get("invite_room_state", []))
        refusal = await self._handler.invite_refusal(
            event.sender, event.state_key, known_request(acquaintance)
        )
        if refusal is not None:
            return _refuse("federated_invite", refusal, local=False)
        if (
            acquaintance is not None
            and acquaintance.requester == event.sender
            and acquaintance.target == event.state_key
        ):
            await self._handler.note_incoming_request(event.room_id, acquaintance)
        return NOT_SPAM

    async def user_may_create_room(self, user_id: str, room_config: dict[str, Any]) -> Decision:
        invitees = room_config.get("invite") or []
        if not isinstance(invitees, list):
            return NOT_SPAM  # Synapse itself rejects the malformed body
        acquaintance = find_in_initial_state(room_config.get("initial_state"))
        for invitee in invitees:
            if not isinstance(invitee, str):
                continue
            refusal = await self._handler.invite_refusal(
                user_id, invitee, known_request(acquaintance)
            )
            if refusal is not None:
                return _refuse("create_room", refusal, local=True)
        return NOT_SPAM

    async def check_username_for_spam(self, profile: UserProfile, requester_id: str) -> bool:
        return not await self._handler.may_see_in_directory(requester_id, profile["user_id"])

    async def on_new_event(self, event: EventBase, state: StateMap[EventBase]) -> None:
        await self._handler.on_event(event, state)
