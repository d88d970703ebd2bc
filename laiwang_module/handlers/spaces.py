"""Spaces: what keeps Laiwang's rooms out of the chat list in every Matrix client.

Each local user gets a space of their own (`rooms.spaces`), made on first need in the user's
name: they are its creator and only member, so they may rename, leave or tidy it like any
space of theirs, and it needs no system user. The module lists in it (one `m.space.child` each)
the user's own timeline, the acquaintances' timelines they are joined to and the shops they
subscribed to, and removes a room when the user leaves it. A timeline the module joins the user
to on its own is also tagged `m.lowpriority`, unless the user has tagged it already. A new space
first lists what the user already has, so users from before spaces get theirs complete (made on
their next timeline join or `GET /timeline`).

Nothing lives in memory. The space is recorded in the database (the first recorded one wins,
as for timelines); each listed room has a row claimed before its `m.space.child` is sent, so of
several workers that see the same join, one sends it. A user who left their space keeps their
choice: nothing is listed any more, and no new space is made.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from synapse.api.errors import SynapseError
from synapse.events import EventBase
from synapse.types import StateMap, UserID
from synapse.util.async_helpers import Linearizer

from laiwang_module.synapse_compat import is_joined, module_clock, tag_room_unless_tagged
from rooms import spaces

if TYPE_CHECKING:
    from laiwang_module.server import LaiwangServer

logger = logging.getLogger(__name__)


class SpacesHandler:
    def __init__(self, server: LaiwangServer):
        self._server = server
        self._api = server.api
        self._store = server.store
        # Serialises first calls of one user within this process; across processes the
        # database decides (`_create`).
        self._creating = Linearizer("laiwang_space_create", clock=module_clock(server.api))

    def _is_mine(self, user_id: str) -> bool:
        return bool(self._api.is_mine(user_id))

    def _now(self) -> int:
        return int(self._api.get_current_time_msec())

    # --- the space ----------------------------------------------------------------------

    async def get_space(self, user_id: str) -> str | None:
        return await self._store.get_space(user_id)

    async def get_or_create_space(self, user_id: str) -> str:
        room_id = await self._store.get_space(user_id)
        if room_id is not None:
            return room_id
        async with self._creating.queue(user_id):
            return await self._create(user_id)

    async def _create(self, user_id: str) -> str:
        room_id = await self._store.get_space(user_id)
        if room_id is not None:
            return room_id  # made while this call waited its turn
        created, _ = await self._api.create_room(
            user_id, spaces.space_room_config(), ratelimit=False
        )
        room_id = await self._store.claim_space(user_id, created, self._now())
        if room_id != created:
            # Another worker made the first space at the same time: keep theirs.
            logger.info("laiwang: %s already has space %s; removing %s", user_id, room_id, created)
            try:
                await self._api.delete_room(created)
            except Exception:
                logger.exception("laiwang: could not delete duplicate space %s", created)
                await self._api.update_room_membership(user_id, user_id, created, "leave")
            return room_id
        self._api.run_as_background_process(
            "laiwang_space_list_existing", self._list_existing, user_id
        )
        return room_id

    async def ensure_space(self, user_id: str) -> None:
        """Make the user's space if they have none (a user from before spaces, on their next
        `GET /timeline`): it then lists what they already have."""
        if await self._store.get_space(user_id) is None:
            await self.get_or_create_space(user_id)

    async def _list_existing(self, user_id: str) -> None:
        """A new space lists the Laiwang rooms the user already has: their own timeline, the
        acquaintances' timelines they are joined to (tagged as when the module joins them: it
        did) and the shops they follow. Each is claimed, so a room listed meanwhile by its own
        join is not listed twice."""
        own = await self._store.get_timeline(user_id)
        if own is not None:
            await self.add_timeline(user_id, own, user_id)
        for other in await self._store.get_acquaintance_ids(user_id):
            room_id = await self._store.get_timeline(other)
            if room_id is not None and await is_joined(self._api, user_id, room_id):
                await self.on_joined_timeline(user_id, room_id, other)
        commerce = self._server.commerce_handler
        if not commerce.enabled:
            return
        try:
            subscriptions = (await commerce.subscriptions(user_id))["subscriptions"]
        except Exception as e:  # the service may be down: the next subscription lists its shop
            logger.info("laiwang: could not list %s's shops: %s", user_id, e)
            return
        for subscription in subscriptions:
            await self.add_shop(user_id, subscription["room_id"])

    async def _send_child(
        self, user_id: str, space_id: str, room_id: str, content: dict[str, Any]
    ) -> None:
        # Synapse drops a state event identical to the current one (a repeat changes nothing).
        await self._api.create_and_send_event_into_room(
            {
                "type": "m.space.child",
                "room_id": space_id,
                "sender": user_id,
                "state_key": room_id,
                "content": content,
            }
        )

    # --- its children ---------------------------------------------------------------------

    async def add_room(self, user_id: str, room_id: str, via: list[str], order: str) -> None:
        """List room_id in the user's space (made now if need be), once."""
        if not self._is_mine(user_id):
            return
        if not await self._store.claim_space_child(user_id, room_id, self._now()):
            return  # listed already (by this call on another worker, or earlier)
        try:
            space_id = await self.get_or_create_space(user_id)
            if not await is_joined(self._api, user_id, space_id):
                return  # they left their space: nothing is listed there any more
            await self._send_child(user_id, space_id, room_id, spaces.child_content(via, order))
        except Exception:
            await self._store.unclaim_space_child(user_id, room_id)  # a later join retries
            raise

    async def add_timeline(self, user_id: str, room_id: str, owner: str) -> None:
        order = spaces.OWN_TIMELINE_ORDER if owner == user_id else spaces.TIMELINE_ORDER
        await self.add_room(user_id, room_id, [UserID.from_string(owner).domain], order)

    async def add_shop(self, user_id: str, room_id: str) -> None:
        await self.add_room(user_id, room_id, [self._api.server_name], spaces.SHOP_ORDER)

    async def remove_room(self, user_id: str, room_id: str) -> None:
        """Take room_id out of the user's space, if the module listed it there."""
        if not await self._store.unclaim_space_child(user_id, room_id):
            return
        space_id = await self._store.get_space(user_id)
        if space_id is None or not await is_joined(self._api, user_id, space_id):
            return
        try:
            await self._send_child(user_id, space_id, room_id, {})
        except SynapseError as e:
            logger.info("laiwang: could not remove %s from %s: %s", room_id, space_id, e)

    async def mark_low_priority(self, user_id: str, room_id: str) -> None:
        """Tag a room the module joined the user to `m.lowpriority`, unless already tagged."""
        try:
            await tag_room_unless_tagged(self._api, user_id, room_id, spaces.LOW_PRIORITY, {})
        except SynapseError as e:
            logger.info("laiwang: could not tag %s for %s: %s", room_id, user_id, e)

    async def on_joined_timeline(self, user_id: str, room_id: str, owner: str) -> None:
        """The module joined a local user to owner's timeline: out of their chat list. Never
        raises: the join stands whatever happens here."""
        try:
            if user_id != owner:
                await self.mark_low_priority(user_id, room_id)
            await self.add_timeline(user_id, room_id, owner)
        except Exception:
            logger.exception("laiwang: could not list %s in %s's space", room_id, user_id)

    # --- following memberships ----------------------------------------------------------

    async def on_event(self, event: EventBase, state: StateMap[EventBase]) -> None:
        """A local user's join to a recorded timeline lists it; their leave (or ban) from a
        listed room takes it out. Also joins the user made by hand (a timeline they left and
        joined again)."""
        if event.type != "m.room.member" or event.state_key is None:
            return
        user_id = event.state_key
        if not self._is_mine(user_id):
            return
        if event.membership == "join":
            owner = await self._server.shares_handler.owner_of(event.room_id)
            if owner is not None:
                await self.add_timeline(user_id, event.room_id, owner)
        elif event.membership in ("leave", "ban"):
            await self.remove_room(user_id, event.room_id)
