"""Shares: each user's timeline (their share room), its membership following acquaintances, the
posting rules, forwarding, the feed index and the feed.

Membership: when a and b become acquainted, each server adds its own users' acquaintances to
their timelines: a local acquaintance is invited and joined by this server; a remote one is
invited, and their server's module accepts the invite (`accept_invite`, from the
`federated_user_may_invite` callback: an out-of-band invite reaches no `on_new_event`). When the
acquaintance ends, the owner's server removes the other (kick) and the other's server leaves.
Every action first reads the current membership, so running it twice changes nothing; the
acquaintance listener runs once per change per server.

The feed: newest posts first across the caller's and their acquaintances' timelines.

One indexed query gives the page (post ids with their reaction and comment counts, see
`storage/shares.py`); Synapse's own visibility rules then decide which of those events the
caller may see (a post of a timeline the caller has not joined yet is left out), and Synapse's
serializer renders them as `/messages` would. The cursor is the last row the query returned, not
the last one shown, so pagination is stable whatever the visibility check removes.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from synapse.api.errors import SynapseError
from synapse.events import EventBase
from synapse.types import StateMap, UserID
from synapse.util.async_helpers import Linearizer
from synapse.util.caches.descriptors import cached
from synapse.util.frozenutils import unfreeze

from laiwang_module.caches import ModuleCache
from laiwang_module.crash_points import crash_point
from laiwang_module.synapse_compat import (
    events_visible_to,
    fake_event_id,
    get_events,
    is_host_in_room,
    is_joined,
    is_shadow_banned,
    joined_room_ids,
    latest_room_events,
    module_clock,
    ratelimit_message,
    received_ts,
    recent_room_events,
    room_creator,
    serialize_for_client,
    server_may_see,
)
from rooms import shares
from rooms.clock import sort_ts
from rooms.errors import Forbidden, InvalidParam, NotFound, ValidationError

if TYPE_CHECKING:
    from laiwang_module.server import LaiwangServer

logger = logging.getLogger(__name__)

# Seconds between attempts of a membership change another server must let through (it may not
# have seen the acquaintance yet) or that waits for an invite to land.
RETRY_DELAYS_S = (1, 2, 5, 10, 30, 60)
# A new timeline's creation is marked alive again after adding this many members.
POPULATE_HEARTBEAT = 20
# Acquaintances older than this with no membership in the timeline are added by `_repair`.
REPAIR_AFTER_MS = 10 * 60 * 1000
# How much history of a remote timeline to index when this server joins it.
CATCH_UP_PAGE, CATCH_UP_PAGES = 100, 5
# The events a timeline's feed is made of, and how many of the latest the reconcile re-reads.
FEED_EVENT_TYPES = ("m.room.message", "m.room.encrypted", "m.sticker", "m.reaction",
                    "m.room.redaction")  # fmt: skip
RECONCILE_WINDOW = CATCH_UP_PAGE * CATCH_UP_PAGES


class TimelineOwnerCache(ModuleCache):
    """Which room is whose timeline, asked for every event by the posting rules. Cached per room
    (a timeline's owner never changes) and invalidated across workers whenever a timeline is
    recorded, since "not a timeline" can become "a timeline" (see `SharesHandler._record`)."""

    def __init__(self, server: LaiwangServer):
        super().__init__(server.api)
        self._store = server.store

    @cached(max_entries=100000)
    async def get_timeline_owner(self, room_id: str) -> str | None:
        """The owner of a timeline room, or None for any other room."""
        return await self._store.get_timeline_owner(room_id)


class ForwardCheckCache(ModuleCache):
    """Whether a remote sender's forward checks out, asked for every forward served to a client
    (`unsigned`). Cached per event: the answer depends only on the event and on events this
    server holds, which do not change."""

    def __init__(self, server: LaiwangServer, handler: SharesHandler):
        super().__init__(server.api)
        self._handler = handler

    @cached(max_entries=50000, num_args=1)
    async def is_forward_verified(self, event_id: str, event: EventBase) -> bool:
        """Whether the forward `event` (whose id is the key) names a real event correctly."""
        return await self._handler.verify_forward(event)


class SharesHandler:
    def __init__(self, server: LaiwangServer):
        self._server = server
        self._api = server.api
        self._store = server.store
        self.owner_cache = TimelineOwnerCache(server)
        self.forward_cache = ForwardCheckCache(server, self)
        # Serialises first calls of one owner within this process (no wasted rooms); across
        # processes the database decides (`_record`).
        self._creating = Linearizer("laiwang_timeline_create", clock=module_clock(server.api))

    async def _record(self, owner: str, room_id: str) -> str:
        """Record room_id as owner's timeline unless one is recorded; returns the recorded one."""
        recorded = await self._store.claim_timeline(owner, room_id, self._now())
        if recorded == room_id:
            await self._api.invalidate_cache(self.owner_cache.get_timeline_owner, (room_id,))
        return recorded

    async def _unrecord(self, owner: str, room_id: str) -> None:
        await self._store.unclaim_timeline(owner, room_id)
        await self._api.invalidate_cache(self.owner_cache.get_timeline_owner, (room_id,))

    def _is_mine(self, user_id: str) -> bool:
        return bool(self._api.is_mine(user_id))

    def _now(self) -> int:
        return int(self._api.get_current_time_msec())

    # --- the room -----------------------------------------------------------------------------

    async def open_timeline(self, owner: str) -> str:
        """`GET /timeline`: the room, and a repair of its membership in the background."""
        existing = await self._store.get_timeline(owner)
        room_id = await self.get_or_create(owner)
        if existing is not None:
            self._in_background("laiwang_timeline_repair", self._repair, owner, room_id)
            # A user from before spaces gets theirs (a new timeline's is made as it is listed).
            self._in_background(
                "laiwang_space_ensure", self._server.spaces_handler.ensure_space, owner
            )
        return room_id

    async def _repair(self, owner: str, room_id: str) -> None:
        """Add acquaintances who never got any membership in the timeline (a retry lost to a
        restart). Whoever left or was removed is left alone: leaving a timeline is a choice.
        Recent acquaintances are the listener's to add, so that nobody is added twice."""
        state = await self._api.get_room_state(room_id, [("m.room.member", None)])
        known = {key[1] for key in state}
        settled = self._now() - REPAIR_AFTER_MS
        for row in await self._store.get_acquaintances(owner):
            if row.other_id not in known and row.since_ts < settled:
                await self._add_member(owner, row.other_id)

    async def get_or_create(self, owner: str) -> str:
        """The owner's timeline room, created on first use with their acquaintances in it."""
        room_id = await self._store.get_timeline(owner)
        if room_id is not None:
            return room_id
        async with self._creating.queue(owner):
            return await self._create(owner)

    async def _create(self, owner: str) -> str:
        """Journalled, so that a process dying at any step leaves nothing half-done: the
        journal row goes in before the room is made and out once its members are added; a row
        left behind is finished by the next call or by the job (`finish_creations`)."""
        room_id = await self._store.get_timeline(owner)
        if room_id is not None:
            return room_id  # made while this call waited its turn
        if await self._store.is_creating_timeline(owner):
            # An earlier creation died (or runs on another worker): its room is the timeline.
            adopted = await self._adopt(owner)
            if adopted is not None:
                self._in_background("laiwang_timeline_populate", self._populate, owner, adopted)
                return adopted
        await self._store.start_timeline_creation(owner, self._now())
        profile = await self._api.get_profile_for_user(UserID.from_string(owner).localpart)
        name = profile.display_name or UserID.from_string(owner).localpart
        created, _ = await self._api.create_room(
            owner, shares.timeline_room_config(owner, f"{name}'s timeline"), ratelimit=False
        )
        crash_point(self._server.config.testing, "timeline_created", owner)
        room_id = await self._record(owner, created)
        if room_id != created:
            # Another request (or worker) made the first timeline at the same time: keep theirs.
            logger.info("laiwang: %s already has timeline %s; removing %s", owner, room_id, created)
            await self._discard(owner, created)
            return room_id
        crash_point(self._server.config.testing, "timeline_recorded", owner)
        self._in_background("laiwang_timeline_populate", self._populate, owner, room_id)
        return room_id

    async def _adopt(self, owner: str) -> str | None:
        """Record the timeline room that a dead creation made but never recorded; None if it
        made none. Should several dead attempts have made one each, the others are removed."""
        made = sorted(
            [
                room_id
                for room_id in await joined_room_ids(self._api, owner)
                if await self.owner_of(room_id) is None
                and await self._is_real_timeline(owner, room_id)
            ]
        )
        if not made:
            return None
        room_id = await self._record(owner, made[0])
        for extra in made:
            if extra != room_id:
                logger.info("laiwang: removing %s, a second timeline of %s", extra, owner)
                await self._discard(owner, extra)
        logger.info(
            "laiwang: adopted %s, the timeline of %s from a creation that died", room_id, owner
        )
        return room_id

    async def _populate(self, owner: str, room_id: str) -> None:
        """A new timeline's second half: in the owner's space, every acquaintance added; then
        the creation is finished (idempotent: the job may run it again after a crash)."""
        await self._server.spaces_handler.add_timeline(owner, room_id, owner)
        for i, other in enumerate(await self._store.get_acquaintance_ids(owner), 1):
            await self._add_member(owner, other)
            if i % POPULATE_HEARTBEAT == 0:
                # Still alive: the job leaves a long list to this process.
                await self._store.start_timeline_creation(owner, self._now())
        await self._store.finish_timeline_creation(owner)

    async def finish_creations(self) -> None:
        """The background job: finish the timeline creations whose process died mid-way
        (`upkeep.unfinished_after`), once across workers: adopt the room if one was made, then
        add the members. A creation that made no room is forgotten: the next call makes it."""
        stale = self._now() - self._server.config.upkeep.unfinished_after_ms
        for owner in await self._store.get_unfinished_timeline_creations(stale):
            if not await self._store.retake_timeline_creation(owner, stale, self._now()):
                continue  # another process took it
            try:
                async with self._creating.queue(owner):
                    room_id = await self._store.get_timeline(owner) or await self._adopt(owner)
                if room_id is None:
                    await self._store.finish_timeline_creation(owner)
                else:
                    await self._populate(owner, room_id)
            except Exception:
                logger.exception("laiwang: could not finish the timeline of %s", owner)

    async def _discard(self, owner: str, room_id: str) -> None:
        try:
            await self._api.delete_room(room_id)
        except Exception:
            logger.exception("laiwang: could not delete duplicate timeline %s", room_id)
            await self._api.update_room_membership(owner, owner, room_id, "leave")

    def _in_background(
        self, desc: str, func: Callable[..., Awaitable[object]], *args: object
    ) -> None:
        self._api.run_as_background_process(desc, func, *args)

    async def membership(self, room_id: str, user_id: str) -> str | None:
        try:
            state = await self._api.get_room_state(room_id, [("m.room.member", user_id)])
        except SynapseError:
            return None
        event = state.get(("m.room.member", user_id))
        return event.membership if event is not None else None

    # --- following acquaintances --------------------------------------------------------------

    async def on_acquaintance(self, a: str, b: str, added: bool) -> None:
        """The acquaintance listener: each side's timeline on this server follows the change."""
        for owner, other in ((a, b), (b, a)):
            if self._is_mine(owner):
                func = self._add_member if added else self._remove_member
                self._in_background("laiwang_timeline_member", func, owner, other)
            elif self._is_mine(other) and not added:
                self._in_background("laiwang_timeline_leave", self._leave_remote, owner, other)

    async def _add_member(self, owner: str, other: str, attempt: int = 0) -> None:
        room_id = await self._store.get_timeline(owner)
        if room_id is None or not await self._store.are_acquainted(owner, other):
            return  # no timeline yet (it will invite on creation), or no longer acquainted
        try:
            membership = await self.membership(room_id, other)
            if membership in ("join", "ban"):
                return
            if membership != "invite":
                await self._api.update_room_membership(owner, other, room_id, "invite")
            if self._is_mine(other):
                await self._api.update_room_membership(other, other, room_id, "join")
                await self._server.spaces_handler.on_joined_timeline(other, room_id, owner)
        except SynapseError as e:
            # A remote server that has not yet seen the acquaintance refuses the invite: retry.
            if attempt >= len(RETRY_DELAYS_S):
                logger.warning("laiwang: gave up adding %s to %s's timeline: %s", other, owner, e)
                return
            logger.info(
                "laiwang: adding %s to %s's timeline failed (%s); retrying", other, owner, e
            )
            self._later(RETRY_DELAYS_S[attempt], self._add_member, owner, other, attempt + 1)

    def _later(self, seconds: float, func: Callable[..., Awaitable[object]], *args: object) -> None:
        self._api.delayed_background_call(
            seconds * 1000, func, *args, desc="laiwang_timeline_retry"
        )

    async def _remove_member(self, owner: str, other: str) -> None:
        room_id = await self._store.get_timeline(owner)
        if room_id is None or await self._store.are_acquainted(owner, other):
            return
        if await self.membership(room_id, other) in ("join", "invite", "knock"):
            try:
                await self._api.update_room_membership(owner, other, room_id, "leave")
            except SynapseError as e:
                logger.info("laiwang: could not remove %s from %s: %s", other, room_id, e)

    async def _leave_remote(self, owner: str, member: str) -> None:
        """A local user leaves a remote owner's timeline when their acquaintance ends."""
        room_id = await self._store.get_timeline(owner)
        if room_id is None or await self._store.are_acquainted(owner, member):
            return
        if await self.membership(room_id, member) in ("join", "invite", "knock"):
            try:
                await self._api.update_room_membership(member, member, room_id, "leave")
            except SynapseError as e:
                logger.info("laiwang: %s could not leave %s: %s", member, room_id, e)

    async def on_federated_invite(self, event: EventBase) -> None:
        """A remote owner invites a local acquaintance to their timeline: accept it, if it is the
        one timeline this server records for that owner and the rate bound allows.

        The recorded timeline of a remote owner is the first one this server accepted for them
        (invited by the owner, the stripped state naming the owner, acquainted): a module-run
        server invites only to its user's one timeline, so a second "timeline" of the same owner
        is not accepted. After joining, `_accept` checks the room's real state and leaves (and
        forgets the record) when the room is not the owner's timeline after all."""
        invitee = event.state_key
        if invitee is None or not self._is_mine(invitee) or event.membership != "invite":
            return
        stripped = event.unsigned.get("invite_room_state", [])
        owner = shares.find_timeline_in_stripped_state(stripped)
        if owner is None or owner != event.sender:
            return
        creator = shares.stripped_creator(stripped)
        if creator is not None and creator != owner:
            return  # the invite itself says someone else made the room
        if not await self._store.are_acquainted(owner, invitee):
            return
        if await self._record(owner, event.room_id) != event.room_id:
            logger.info(
                "laiwang: not accepting %s for %s: %s has another timeline here",
                event.room_id,
                invitee,
                owner,
            )
            return
        now = self._now()
        if not await self._store.claim_accept(
            invitee, owner, event.room_id, now, now - shares.ACCEPT_WINDOW_MS
        ):
            logger.info("laiwang: not accepting %s for %s now: rate bound", event.room_id, invitee)
            return
        # The invite is persisted after this callback returns: accept a moment later.
        self._later(RETRY_DELAYS_S[0], self._accept, owner, invitee, event.room_id, 0)

    async def _accept(self, owner: str, invitee: str, room_id: str, attempt: int) -> None:
        if not await self._store.are_acquainted(owner, invitee):
            return
        if await self._store.get_timeline(owner) != room_id:
            return  # forgotten meanwhile (it was not the owner's timeline)
        if await is_joined(self._api, invitee, room_id):
            return
        try:
            await self._api.update_room_membership(
                invitee,
                invitee,
                room_id,
                "join",
                remote_room_hosts=[UserID.from_string(owner).domain],
            )
        except SynapseError as e:
            if attempt + 1 >= len(RETRY_DELAYS_S):
                logger.warning("laiwang: gave up joining %s to %s: %s", invitee, room_id, e)
                return
            self._later(
                RETRY_DELAYS_S[attempt + 1], self._accept, owner, invitee, room_id, attempt + 1
            )
            return
        if not await self._is_real_timeline(owner, room_id):
            logger.warning(
                "laiwang: %s is not %s's timeline after all; %s leaves", room_id, owner, invitee
            )
            await self._unrecord(owner, room_id)
            try:
                await self._api.update_room_membership(invitee, invitee, room_id, "leave")
            except SynapseError as e:
                logger.warning("laiwang: %s could not leave %s: %s", invitee, room_id, e)
            return
        await self._server.spaces_handler.on_joined_timeline(invitee, room_id, owner)
        await self._catch_up(owner, invitee, room_id)

    async def _is_real_timeline(self, owner: str, room_id: str) -> bool:
        """What the room's own state says (see `rooms.shares.is_real_timeline`)."""
        state = await self._api.get_room_state(
            room_id, [("m.room.create", ""), (shares.TIMELINE_STATE, "")]
        )
        return self._state_is_timeline_of(owner, state)

    @staticmethod
    def _state_is_timeline_of(owner: str, state: StateMap[EventBase]) -> bool:
        create = state.get(("m.room.create", ""))
        timeline = state.get((shares.TIMELINE_STATE, ""))
        return shares.is_real_timeline(
            owner,
            create.sender if create is not None else None,
            timeline.content if timeline is not None else None,
            timeline.sender if timeline is not None else None,
        )

    async def _catch_up(self, owner: str, user_id: str, room_id: str) -> None:
        """Index the posts made before this server joined a remote timeline: federation brings
        only new events (and `on_new_event` never sees backfilled ones)."""
        try:
            events = await recent_room_events(
                self._api, user_id, room_id, CATCH_UP_PAGE, CATCH_UP_PAGES
            )
        except SynapseError as e:
            logger.info("laiwang: could not catch up on %s: %s", room_id, e)
            return
        await self._index_all(events, owner)

    # --- posting rules ------------------------------------------------------------------------

    async def owner_of(self, room_id: str) -> str | None:
        cache: Any = self.owner_cache  # @cached is typed by Synapse's mypy plugin only
        owner: str | None = await cache.get_timeline_owner(room_id)
        return owner

    async def check_event(self, event: EventBase) -> tuple[str, str] | None:
        """(errcode, sentence) refusing an event, or None. Shares are checked in every room;
        the posting rules in timelines (a room is a timeline when this server recorded it:
        created here, invited to, or joined)."""
        content: Mapping[str, Any] = event.content
        if event.type == "m.room.message":
            try:
                shares.check_share_content(content)
            except ValidationError as e:
                return e.errcode, f"Malformed share: {e.sentence}"
            block = content.get(shares.FORWARD_BLOCK)
            if block is not None and self._is_mine(event.sender):
                # A local sender's forward must be of something they can see, attributed to
                # its real sender. (A remote sender's is checked by their server: this one may
                # not have the source room at all.)
                source = shares.parse_forward_block(block)
                original = await self._visible_source(event.sender, source.room_id, source.event_id)
                if original is None or original.sender != source.sender:
                    return (
                        "M_FORBIDDEN",
                        "You can only forward a message you can see, attributed to its sender.",
                    )
        if event.is_state():
            return None
        owner = await self.owner_of(event.room_id)
        if owner is None:
            return None
        refusal = shares.posting_refusal(event.sender, owner, event.type, content, False)
        return ("M_FORBIDDEN", refusal) if refusal is not None else None

    # --- the feed index -----------------------------------------------------------------------

    async def on_event(self, event: EventBase, state: StateMap[EventBase]) -> None:
        """Index posts, reactions and comments of recorded timelines for the feed (idempotent:
        keyed by event id); a redaction removes its target. Only the owner's one recorded
        timeline feeds the feed: another room that calls itself theirs does not."""
        owner: str | None = None
        timeline = state.get((shares.TIMELINE_STATE, ""))
        if timeline is not None:
            owner = shares.parse_timeline(timeline.content, timeline.sender)
        if owner is None or not self._state_is_timeline_of(owner, state):
            return  # `state` is the room's current state: this room is no timeline
        recorded = await self.owner_of(event.room_id)
        if recorded is None and not self._is_mine(owner):
            # A remote timeline this server joined without an invite it saw (by hand): record it
            # unless the owner has another timeline here.
            await self._record(owner, event.room_id)
            recorded = await self.owner_of(event.room_id)
        if recorded != owner:
            return
        await self._index_all([event], owner)

    async def reconcile(self) -> int:
        """Re-index the latest events of every recorded timeline this server is in (idempotent:
        keyed by event id), repairing what a missed update left out; returns how many."""
        timelines = await self._store.get_all_timelines()
        for owner, room_id in timelines:
            if not await is_host_in_room(self._api, room_id):
                continue
            if not await self._is_real_timeline(owner, room_id):
                continue
            events = await latest_room_events(
                self._api, room_id, FEED_EVENT_TYPES, RECONCILE_WINDOW
            )
            await self._index_all(events, owner)
        return len(timelines)

    async def _index_all(self, events: list[EventBase], owner: str) -> None:
        posts = [
            e.event_id
            for e in events
            if not e.is_state() and shares.is_post(e.sender, owner, e.type, e.content)
        ]
        received = await received_ts(self._api, posts) if posts else {}
        for event in events:
            await self._index(event, owner, received.get(event.event_id, self._now()))

    async def _index(self, event: EventBase, owner: str, received: int) -> None:
        if event.type == "m.room.redaction":
            if event.redacts:
                await self._store.unindex_event(event.redacts)
            return
        if event.is_state():
            return
        if shares.is_post(event.sender, owner, event.type, event.content):
            # Ranked by the sender's time only up to when this server received the post.
            ts = sort_ts(int(event.origin_server_ts), received)
            await self._store.index_post(event.event_id, event.room_id, owner, ts)
            return
        related = shares.feed_relation(event.type, event.content)
        if related is not None:
            await self._store.index_relation(event.event_id, event.room_id, related[1], related[0])

    # --- forwarding ---------------------------------------------------------------------------

    async def _visible_source(self, user_id: str, room_id: str, event_id: str) -> EventBase | None:
        """The event, if the local user is joined to its room and may see it."""
        if not await is_joined(self._api, user_id, room_id):
            return None
        visible = await events_visible_to(self._api, user_id, [event_id])
        if not visible or visible[0].event.room_id != room_id:
            return None
        event: EventBase = visible[0].event
        return event

    async def forward(self, user_id: str, room_id: str, event_id: str, comment: str | None) -> str:
        """Forward an event the caller can see into the caller's timeline, with attribution;
        returns the new event's id. Raises NotFound (no such event that the caller can see),
        InvalidParam (an event that cannot be forwarded, such as an AA event or an edit)."""
        original = await self._visible_source(user_id, room_id, event_id)
        if original is None:
            # Not "forbidden": a stranger learns nothing about the room.
            raise NotFound("There is no such event that you can see.")
        refusal = shares.forwardable_refusal(original.type, original.content)
        if refusal is not None:
            raise InvalidParam(None, refusal)
        timeline = await self.get_or_create(user_id)
        content = shares.forward_content(
            unfreeze(original.content),
            shares.ForwardSource(room_id, event_id, original.sender),
            comment,
        )
        return await self.post(user_id, timeline, content)

    async def require_joined(self, user_id: str, room_id: str) -> None:
        """Raises Forbidden unless the local user is joined to the room."""
        if not await is_joined(self._api, user_id, room_id):
            raise Forbidden("You are not a joined member of this room")

    async def post(self, user_id: str, room_id: str, content: dict[str, Any]) -> str:
        """Send a message the user asked the module for (a forward, a card), as Synapse's /send
        would: counted against the caller's rc_message, through the event checks, and for a
        shadow-banned caller sent nowhere (a fake id, as /send answers them)."""
        await ratelimit_message(self._api, user_id)
        if await is_shadow_banned(self._api, user_id):
            return fake_event_id()
        sent = await self._api.create_and_send_event_into_room(
            {"type": "m.room.message", "room_id": room_id, "sender": user_id, "content": content}
        )
        return str(sent.event_id)

    async def unsigned_fields(self, event: EventBase) -> dict[str, Any]:
        """`unsigned["org.laiwang.forward.verified"]: false` on a remote sender's forward that
        this server could not verify; `{}` for every other event (a local sender's forward was
        checked when it was sent). Cheap: a dict lookup for non-forwards, a cache hit after."""
        if event.type != "m.room.message" or shares.FORWARD_BLOCK not in event.content:
            return {}
        if self._is_mine(event.sender):
            return {}
        cache: Any = self.forward_cache  # @cached is typed by Synapse's mypy plugin only
        verified: bool = await cache.is_forward_verified(event.event_id, event)
        return {} if verified else {shares.FORWARD_VERIFIED: False}

    async def verify_forward(self, event: EventBase) -> bool:
        """Whether a remote sender's forward names, in a room or for a sender of this server,
        an event this server holds there from that sender, that may be forwarded, in a room the
        forwarder is joined to, and that the forwarder's server may see (as this server's
        federation API would decide it). Anything this server has no authority on, or does not
        hold, is unverified."""
        try:
            source = shares.parse_forward_block(event.content.get(shares.FORWARD_BLOCK))
        except ValidationError:
            return False
        creator = await room_creator(self._api, source.room_id)
        if not shares.forward_checkable(source, self._api.server_name, creator):
            return False
        original = (await get_events(self._api, [source.event_id])).get(source.event_id)
        if original is None or original.internal_metadata.is_soft_failed():
            return False
        if not shares.forward_matches(
            source, original.room_id, original.sender, original.type, original.content
        ):
            return False
        # As for a local forward: the forwarder is in the source room (as this server sees it)
        # and their server may see the event there.
        if await self.membership(source.room_id, event.sender) != "join":
            return False
        return await server_may_see(self._api, UserID.from_string(event.sender).domain, original)

    # --- the feed ---------------------------------------------------------------------------

    async def get_feed(
        self, user_id: str, limit: int, before: shares.FeedCursor | None
    ) -> dict[str, Any]:
        """A page of the merged feed, newest first: the caller's and their acquaintances' posts
        that the caller may see, with reaction and comment counts, and `next_batch` when there
        may be more."""
        rows = await self._store.get_feed(
            user_id, limit, (before.ts, before.event_id) if before is not None else None
        )
        visible = await events_visible_to(self._api, user_id, [r.event_id for r in rows])
        serialized = await serialize_for_client(self._api, user_id, visible)
        counts = {r.event_id: r for r in rows}
        chunk = []
        for event in serialized:
            row = counts[event["event_id"]]
            chunk.append({**event, "reactions": row.reactions, "comments": row.comments})
        out: dict[str, Any] = {"chunk": chunk}
        if len(rows) == limit:
            out["next_batch"] = shares.FeedCursor(rows[-1].ts, rows[-1].event_id).encode()
        return out
