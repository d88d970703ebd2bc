"""Contact requests, the acquaintance index and the acquaintances-only policy.

The index follows the rooms: `on_event` re-derives a contact room from what this server can
check (its creator, its members ever, its invites and what they carried; `room_acquaintance`),
never from the `org.laiwang.acquaintance` content alone, and adds or removes the acquaintance.
It is idempotent, so every worker that is notified of an event may apply it, and `rebuild`
recomputes everything from the rooms themselves.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import attr
from synapse.api.errors import SynapseError
from synapse.events import EventBase
from synapse.logging.context import make_deferred_yieldable, run_in_background
from synapse.types import StateMap, UserID
from synapse.util import unwrapFirstError
from synapse.util.async_helpers import gather_results
from synapse.util.caches.descriptors import cached

from laiwang_module.caches import ModuleCache
from laiwang_module.synapse_compat import (
    get_events_as_list,
    invited_room_ids,
    is_appservice_user,
    is_joined,
    is_partial_state_room,
    is_shadow_banned,
    share_a_room,
)
from rooms.clusters import CLUSTER_STATE
from rooms.contacts import (
    ACCEPTED,
    ACQUAINTANCE_STATE,
    PENDING,
    SOURCE_IMPORT,
    Acquaintance,
    Invite,
    RoomFacts,
    direct_chats,
    importable,
    invite_from_event,
    is_ignored,
    parse_acquaintance,
    request_allowed_by_setting,
    request_source,
    request_state,
    room_acquaintance,
)
from rooms.errors import BadGateway, Forbidden, NotFound

if TYPE_CHECKING:
    from laiwang_module.server import LaiwangServer
    from laiwang_module.storage.contacts import ContactRoom

logger = logging.getLogger(__name__)


@attr.s(frozen=True, slots=True, auto_attribs=True)
class Suggestion:
    user_id: str
    reason: str  # "in_your_address_book" | "has_you_in_their_address_book"
    mutual_count: int


# Invites of a room the rule reads at most: a contact room has one or a few.
MAX_INVITES = 50

RoomRequest = Callable[[], Awaitable[Acquaintance | None]]

# Why the invite policy refused (`InviteRefusal.kind`): the metrics' reason label.
REFUSED_IGNORED = "ignored"  # the invitee ignores the inviter
REFUSED_REQUEST = "request_not_accepted"  # a contact request the invitee's settings refuse
REFUSED_STRANGER = "stranger"  # not acquainted, and no contact request from the inviter


@attr.s(frozen=True, slots=True, auto_attribs=True)
class InviteRefusal:
    kind: str  # one of REFUSED_*
    sentence: str  # for the inviter


def known_request(acquaintance: Acquaintance | None) -> RoomRequest:
    """A `room_request` for `invite_refusal` when the room's request is already at hand."""

    async def get() -> Acquaintance | None:
        return acquaintance

    return get


class AcquaintanceCache(ModuleCache):
    """`are_acquainted`, asked on every invite, cached on each process and invalidated on
    every worker when the pair changes (`ContactsHandler._changed`)."""

    def __init__(self, server: LaiwangServer):
        super().__init__(server.api)
        self._store = server.store

    @cached(max_entries=100000)
    async def are_acquainted(self, a: str, b: str) -> bool:
        """Whether a and b are acquaintances, by the database (cached; invalidated on every worker
        when the pair changes)."""
        return await self._store.are_acquainted(a, b)


AcquaintanceListener = Callable[[str, str, bool], Awaitable[None]]


class ContactsHandler:
    def __init__(self, server: LaiwangServer):
        self._server = server
        self._api = server.api
        self._store = server.store
        self._config = server.config
        self._listeners: list[AcquaintanceListener] = []
        self.cache = AcquaintanceCache(server)

    def add_listener(self, listener: AcquaintanceListener) -> None:
        """Call `listener(a, b, added)` when a and b become (or stop being) acquaintances.

        It runs once per change on this server: on the one process whose database write made
        the change (the index writes are idempotent, so a second process changes nothing)."""
        self._listeners.append(listener)

    async def _changed(self, a: str, b: str, added: bool) -> None:
        cache: Any = self.cache  # @cached methods are typed by Synapse's mypy plugin only
        for key in ((a, b), (b, a)):
            await self._api.invalidate_cache(cache.are_acquainted, key)
        for listener in self._listeners:
            try:
                await listener(a, b, added)
            except Exception:
                logger.exception("acquaintance listener failed for %s, %s", a, b)

    def _now(self) -> int:
        return int(self._api.get_current_time_msec())

    def _is_mine(self, user_id: str) -> bool:
        return bool(self._api.is_mine(user_id))

    # --- the policy ---

    async def invite_refusal(
        self,
        inviter: str,
        invitee: str,
        room_request: RoomRequest,
    ) -> InviteRefusal | None:
        """Why `inviter` may not invite the local user `invitee`, or None if they may.

        `room_request` gives the room's `org.laiwang.acquaintance` state (None if it has none);
        it is only asked for when the two are not acquainted already.
        """
        if not self._config.acquaintances_only or not self._is_mine(invitee):
            return None
        # Both lookups are cached; on a first invite of a pair they run side by side, so a
        # decision costs one database round trip, not two.
        cache: Any = self.cache  # @cached methods are typed by Synapse's mypy plugin only
        ignored, acquainted = await make_deferred_yieldable(
            gather_results(
                (
                    run_in_background(
                        self._api.account_data_manager.get_global, invitee, "m.ignored_user_list"
                    ),
                    run_in_background(cache.are_acquainted, inviter, invitee),
                ),
                consumeErrors=True,
            ).addErrback(unwrapFirstError)
        )
        if is_ignored(ignored, inviter):
            return InviteRefusal(
                REFUSED_IGNORED, f"{invitee} does not accept invites from {inviter}."
            )
        if acquainted:
            return None
        if await self._is_exempt(inviter):
            return None
        if await self._acquainted_by_room(inviter, invitee):
            return None
        acquaintance = await room_request()
        if (
            acquaintance is not None
            and acquaintance.requester == inviter
            and acquaintance.target == invitee
        ):
            if await self.request_allowed(inviter, invitee):
                return None
            return InviteRefusal(
                REFUSED_REQUEST, f"{invitee} does not accept contact requests from {inviter}."
            )
        return InviteRefusal(
            REFUSED_STRANGER,
            f"{inviter} is not an acquaintance of {invitee}: only acquaintances may invite "
            "them. Send a contact request first.",
        )

    async def _acquainted_by_room(self, a: str, b: str) -> bool:
        """Whether a contact room between a and b makes them acquaintances now, when the index
        says they are not. The index follows memberships in `on_new_event`, which runs after
        the join has answered: an accepted request must hold for the very next call, so the
        rooms decide and the index catches up here (idempotently). Strangers have no contact
        room: for them this is one indexed read."""
        rooms = await self._store.get_contact_rooms_between(a, b)
        if not rooms:
            return False
        for room in rooms:
            await self._apply_memberships(room.room_id)
        return await self._store.are_acquainted(a, b)

    async def _catch_up_own_acceptances(self, user_id: str) -> None:
        """Index the requests a local user accepted with a plain join whose update has not run
        yet (it runs after the join answered): what the user did holds for their next read.
        Asks Synapse's cached membership only; nothing to do once the index has caught up."""
        if not self._is_mine(user_id):
            return
        incoming, _ = await self._store.get_pending_requests(user_id)
        for room in incoming:
            if await is_joined(self._api, user_id, room.room_id):
                await self._apply_memberships(room.room_id)

    async def catch_up_requests(self, user_id: str) -> None:
        """Re-derive the user's pending contact rooms from the rooms (idempotent): one of them
        may have been accepted by a join whose update has not reached the index yet. For
        checks that ask the index about a user's acquaintances in bulk and would refuse."""
        incoming, outgoing = await self._store.get_pending_requests(user_id)
        for room in (*incoming, *outgoing):
            await self._apply_memberships(room.room_id)

    async def note_incoming_request(self, room_id: str, acquaintance: Acquaintance) -> None:
        """Record a contact request arriving over federation once the policy let it in.

        Synapse does not run `on_new_event` for such out-of-band invites, so this is the only
        moment this server learns of the request before the target answers it."""
        await self._store.record_contact_room(
            room_id,
            acquaintance.requester,
            acquaintance.target,
            acquaintance.message,
            acquaintance.source,
            PENDING,
            self._now(),
        )

    async def request_allowed(self, requester: str, target: str) -> bool:
        """Whether `target`'s `accept_requests_from` setting lets `requester` ask them
        (`address_book`: the requester is in the target's address book)."""
        settings = await self._server.settings_handler.get(target)
        in_book = await self._store.is_in_address_book(target, requester)
        return request_allowed_by_setting(settings.accept_requests_from, in_book)

    async def _is_exempt(self, user_id: str) -> bool:
        if is_appservice_user(self._api, user_id):
            return True
        return self._is_mine(user_id) and await self._api.is_user_admin(user_id)

    async def may_see_in_directory(self, searcher: str, user_id: str) -> bool:
        """The user directory shows acquaintances and people one shares a room with."""
        if searcher == user_id or not self._config.acquaintances_only:
            return True
        if await self._store.are_acquainted(searcher, user_id):
            return True
        return await share_a_room(self._api, searcher, user_id)

    # --- requests ---

    async def send_request(self, requester: str, target: str, message: str | None) -> str:
        """Ask `target` to become an acquaintance: a direct chat carrying the acquaintance state,
        with the invite. Asking again reuses the room; asking someone who asked you accepts.
        Returns the room id. Raises NotFound (no such local user), Forbidden (the invite policy
        or the target's server refuses), BadGateway (the target's server cannot be reached)."""
        if self._is_mine(target) and not await self._api.check_user_exists(target):
            raise NotFound(f"There is no user {target}.")

        rooms = await self._store.get_contact_rooms_between(requester, target)
        if rooms:
            # The index follows memberships after they answer (a leave that just returned may
            # not be in it yet): the rooms decide, and the index catches up now.
            for room in rooms:
                await self._apply_memberships(room.room_id)
            rooms = await self._store.get_contact_rooms_between(requester, target)
        for room in rooms:
            if room.state == ACCEPTED and await self._store.are_acquainted(requester, target):
                return room.room_id
            if room.state == PENDING and room.requester == requester:
                return room.room_id  # asking again returns the same room
            if room.state == PENDING and room.requester == target:
                # They asked us first: asking back accepts their request.
                await self._api.update_room_membership(
                    requester,
                    requester,
                    room.room_id,
                    "join",
                    remote_room_hosts=[UserID.from_string(target).domain],
                )
                await self._apply_memberships(room.room_id)
                return room.room_id
        existing = await self._store.get_acquaintance_room(requester, target)
        if existing is not None:
            return existing

        if self._is_mine(target):
            # Refuse before any room exists, with the reason the invite check would give.
            refusal = await self.invite_refusal(
                requester, target, known_request(Acquaintance(requester, target, message))
            )
            if refusal is not None:
                raise Forbidden(refusal.sentence)

        source = await self._request_source(requester, target)
        acquaintance = Acquaintance(requester, target, message)
        room_id, _ = await self._api.create_room(
            requester,
            {
                "preset": "trusted_private_chat",
                "is_direct": True,
                "initial_state": [
                    {
                        "type": ACQUAINTANCE_STATE,
                        "state_key": "",
                        "content": acquaintance.to_content(),
                    }
                ],
                # The creator already has full power (and room v12 forbids listing them).
                "power_level_content_override": {"users": {target: 100}},
            },
            ratelimit=True,
        )
        await self._store.record_contact_room(
            room_id, requester, target, message, source, "ended", self._now()
        )
        # A shadow-banned requester's invite reaches no one, as Synapse's /createRoom drops
        # their invites: the room is made and the answer looks the same.
        if not await is_shadow_banned(self._api, requester):
            try:
                await self._api.update_room_membership(
                    requester, target, room_id, "invite", content={"is_direct": True}
                )
            except Exception as e:
                # The target's server refused or is unreachable: leave nothing half-made behind.
                await self._api.update_room_membership(requester, requester, room_id, "leave")
                await self._apply_memberships(room_id)
                if isinstance(e, SynapseError) and e.code == 403:
                    raise Forbidden(f"{target}'s server refused the request: {e.msg}") from e
                if isinstance(e, SynapseError):
                    raise
                raise BadGateway(f"Could not reach {target}'s server: {e}") from e
        await self._apply_memberships(room_id)
        await self._add_to_m_direct(requester, target, room_id)
        return room_id

    async def _request_source(self, requester: str, target: str) -> str:
        """`address_book` when a local requester has a discoverable target in their book."""
        if not self._is_mine(requester):
            return request_source(False, False)
        return request_source(
            await self._store.is_in_address_book(requester, target),
            bool(await self._server.settings_handler.discoverable_among([target])),
        )

    async def _add_to_m_direct(self, user_id: str, other: str, room_id: str) -> None:
        """Mark the room as a direct chat in the user's `m.direct`, as clients do."""
        manager = self._api.account_data_manager
        current = await manager.get_global(user_id, "m.direct") or {}
        rooms = list(current.get(other, ()))
        if room_id in rooms:
            return
        updated = {user: list(ids) for user, ids in current.items()}
        updated[other] = [*rooms, room_id]
        await manager.put_global(user_id, "m.direct", updated)

    # --- listing and ending ---

    async def list_contacts(self, user_id: str) -> list[dict[str, Any]]:
        """The caller's acquaintances, with since when and how they met (`source`)."""
        await self._catch_up_own_acceptances(user_id)
        return [
            {
                "user_id": r.other_id,
                "room_id": r.room_id,
                "since_ts": r.since_ts,
                "source": r.source,
            }
            for r in await self._store.get_acquaintances(user_id)
        ]

    async def list_requests(self, user_id: str) -> dict[str, list[dict[str, Any]]]:
        """The caller's pending contact requests: `incoming` (checked against their real invites)
        and `outgoing`."""
        incoming, outgoing = await self._store.get_pending_requests(user_id)
        # A rejected invite over federation is not notified to modules either: the user's
        # current invites are the truth for what is still waiting on them.
        invited = await invited_room_ids(self._api, user_id)
        incoming = [r for r in incoming if r.room_id in invited]

        def show(room: ContactRoom, other: str) -> dict[str, Any]:
            return {
                "user_id": other,
                "room_id": room.room_id,
                "message": room.message,
                "ts": room.created_ts,
            }

        return {
            "incoming": [show(r, r.requester) for r in incoming],
            "outgoing": [show(r, r.target) for r in outgoing],
        }

    async def remove(self, user_id: str, other: str) -> None:
        """End the acquaintance with `other` by leaving the contact room (the other side's index
        follows the membership). Raises NotFound when `other` is no acquaintance."""
        room_id = await self._store.get_acquaintance_room(user_id, other)
        if room_id is None:
            raise NotFound(f"{other} is not your acquaintance.")
        await self._api.update_room_membership(user_id, user_id, room_id, "leave")
        await self._apply_memberships(room_id)

    # --- import and suggestions ---

    async def import_direct_chats(self, user_id: str) -> tuple[int, int]:
        """Turn the caller's direct chats (`m.direct`) into acquaintances where the room allows
        it (`importable`: a private room whose only members ever were the two, both joined, the
        invite marked direct) and neither ignores the other. Returns (imported, skipped): the
        listed rooms made acquaintances, and those that may not be (the caller's word in
        `m.direct` counts for nothing). Rooms with someone already an acquaintance are neither.

        The room gets `org.laiwang.acquaintance` state (source "import") when the caller may
        send it, so that the other side's server, and a rebuild, know it too."""
        m_direct = await self._api.account_data_manager.get_global(user_id, "m.direct")
        imported = skipped = 0
        for other, room_id in direct_chats(m_direct):
            if other != user_id and await self._store.are_acquainted(user_id, other):
                continue
            facts = await self._room_facts(room_id) if other != user_id else None
            if (
                facts is None
                or not importable(facts, user_id, other)
                or await self._ignoring(user_id, other)
            ):
                skipped += 1
                continue
            acquaintance = Acquaintance(user_id, other, None, SOURCE_IMPORT)
            await self._store.prune_contact_room(room_id, (user_id, other))
            await self._store.record_contact_room(
                room_id, user_id, other, None, SOURCE_IMPORT, ACCEPTED, self._now()
            )
            if await self._store.add_acquaintance(
                user_id, other, room_id, SOURCE_IMPORT, self._now()
            ):
                imported += 1
                await self._changed(user_id, other, True)
            try:
                await self._api.create_and_send_event_into_room(
                    {
                        "type": ACQUAINTANCE_STATE,
                        "state_key": "",
                        "room_id": room_id,
                        "sender": user_id,
                        "content": acquaintance.to_content(),
                    }
                )
            except SynapseError as e:
                logger.info("import: could not mark %s as a contact room: %s", room_id, e)
        return imported, skipped

    async def suggestions(self, user_id: str) -> list[Suggestion]:
        """People in the caller's address book, then people who have the caller in theirs;
        only active, discoverable people who are not yet acquaintances, each with their mutual
        acquaintance count."""
        known = await self._store.get_acquaintance_ids(user_id)
        known.add(user_id)
        picked: dict[str, str] = {}
        in_book = [
            u for u in await self._store.get_address_book_user_ids(user_id) if u not in known
        ]
        for other in await self._server.settings_handler.discoverable_among(in_book):
            picked.setdefault(other, "in_your_address_book")
        owners = [
            u for u in await self._store.get_address_book_owners_of(user_id) if u not in known
        ]
        # Discoverable ones only: a hidden owner must not be revealed by their own book.
        for other in sorted(await self._server.settings_handler.discoverable_among(owners)):
            picked.setdefault(other, "has_you_in_their_address_book")
        counts = await self._store.count_mutual_acquaintances(user_id, list(picked))
        out = [Suggestion(u, reason, counts.get(u, 0)) for u, reason in picked.items()]
        out.sort(key=lambda s: (-s.mutual_count, s.user_id))
        return out

    # --- following membership ---

    async def on_event(self, event: EventBase, state: StateMap[EventBase]) -> None:
        """Keep the acquaintance index in step with a contact room (idempotent).

        The room is re-derived from what this server can check (`room_acquaintance`): the
        state's content alone makes nobody acquainted."""
        if event.type not in ("m.room.member", ACQUAINTANCE_STATE) or event.state_key is None:
            return
        if ("m.room.create", "") not in state:
            await self._out_of_band(event)
            return
        if (
            (ACQUAINTANCE_STATE, "") not in state
            and event.type == "m.room.member"
            and not (event.membership == "join" and self._is_mine(event.state_key))
        ):
            # An ordinary room (most member events): no database read. Only a contact room's
            # state has the acquaintance key, and nobody removes a key from a room's state. A
            # request recorded from a forged invite's stripped state into such a room is
            # pruned when its local invitee joins (and by the reconcile pass).
            return
        known = await self._store.get_contact_room(event.room_id)
        if known is None:
            if (ACQUAINTANCE_STATE, "") not in state:
                return
            members = sum(1 for key in state if key[0] == "m.room.member")
            if members > 2:
                return  # no contact room, and never again: nobody leaves the room's state
        if await is_partial_state_room(self._api, event.room_id):
            # Joined over federation with partial state: not all members are known yet, and
            # reading them waits until they are (which this join's request must not do).
            self._api.run_as_background_process(
                "laiwang_contact_room", self._apply_memberships, event.room_id
            )
            return
        await self._apply_memberships(event.room_id)

    async def _out_of_band(self, event: EventBase) -> None:
        """A local user's membership in a room this server is not (or no longer) in: an invite,
        its rejection, or the leave of the last local member. It moves a request recorded
        before, and can end an acquaintance, but never makes one."""
        if event.type != "m.room.member":
            return
        row = await self._store.get_contact_room(event.room_id)
        if row is None or event.state_key not in (row.requester, row.target):
            return
        if not self._is_mine(event.state_key):
            return
        # The other side's membership is not known here: assume it unchanged (joined).
        requester = event.membership if event.state_key == row.requester else "join"
        target = event.membership if event.state_key == row.target else "join"
        state = request_state(requester, target)
        if state == ACCEPTED:
            return  # only the room's own state, checked by the rule, may accept
        await self._store.record_contact_room(
            row.room_id, row.requester, row.target, row.message, row.source, state, self._now()
        )
        if await self._store.remove_acquaintance_via(row.requester, row.target, row.room_id):
            await self._changed(row.requester, row.target, False)

    async def _room_facts(self, room_id: str) -> RoomFacts | None:
        """What the contact-room rule reads of a room, or None if this server is not in it."""
        state = await self._api.get_room_state(
            room_id,
            [
                ("m.room.create", ""),
                ("m.room.join_rules", ""),
                (CLUSTER_STATE, ""),
                (ACQUAINTANCE_STATE, ""),
                ("m.room.member", None),
            ],
        )
        create = state.get(("m.room.create", ""))
        if create is None:
            return None
        members = {key[1]: ev.membership for key, ev in state.items() if key[0] == "m.room.member"}
        invites: tuple[Invite, ...] = ()
        if len(members) <= 2:  # else no rule can hold: spare the lookups
            ids = await self._store.get_invite_event_ids(room_id, MAX_INVITES)
            invites = tuple(
                invite_from_event(
                    ev.sender,
                    ev.state_key,
                    ev.content,
                    ev.unsigned.get("invite_room_state"),
                    vetted=self._is_mine(ev.sender)
                    or ev.internal_metadata.is_out_of_band_membership(),
                )
                for ev in await get_events_as_list(self._api, ids)
                if ev.state_key is not None
            )
        join_rules = state.get(("m.room.join_rules", ""))
        marker = state.get((ACQUAINTANCE_STATE, ""))
        return RoomFacts(
            creator=create.sender,
            plain=create.content.get("type") is None and (CLUSTER_STATE, "") not in state,
            join_rule=join_rules.content.get("join_rule") if join_rules is not None else None,
            members=members,
            invites=invites,
            marker=parse_acquaintance(marker.content) if marker is not None else None,
            marker_sender=marker.sender if marker is not None else None,
        )

    async def _ignoring(self, a: str, b: str) -> bool:
        """Whether either of a and b, where local, ignores the other."""
        for user_id, other in ((a, b), (b, a)):
            if self._is_mine(user_id):
                ignored = await self._api.account_data_manager.get_global(
                    user_id, "m.ignored_user_list"
                )
                if is_ignored(ignored, other):
                    return True
        return False

    async def _apply_memberships(self, room_id: str) -> None:
        """Re-derive one room from its current state: the pair it makes acquaintances of, if
        any, and nothing else (what an earlier rule or a forged state left is removed)."""
        facts = await self._room_facts(room_id)
        if facts is None:
            return  # this server is not in the room (e.g. an invite not yet answered)
        found = room_acquaintance(facts)
        if (
            found is not None
            and found[0].source == SOURCE_IMPORT
            and await self._ignoring(found[0].requester, found[0].target)
        ):
            found = None
        keep = (found[0].requester, found[0].target) if found is not None else None
        for a, b in await self._store.prune_contact_room(room_id, keep):
            await self._changed(a, b, False)
        if found is not None:
            await self._apply(room_id, *found)

    async def _apply(self, room_id: str, acquaintance: Acquaintance, state: str) -> None:
        requester, target = acquaintance.requester, acquaintance.target
        if not (self._is_mine(requester) or self._is_mine(target)):
            return
        existing = await self._store.get_contact_room(room_id)
        if existing is not None:
            source = existing.source
        elif acquaintance.source == SOURCE_IMPORT:
            source = SOURCE_IMPORT
        else:
            # The room's events do not say how they met (and may record the room before
            # send_request does, or again after a prune): the requester's book does.
            source = await self._request_source(requester, target)
        now = self._now()
        await self._store.record_contact_room(
            room_id, requester, target, acquaintance.message, source, state, now
        )
        if state == ACCEPTED:
            if await self._store.add_acquaintance(requester, target, room_id, source, now):
                await self._changed(requester, target, True)
        elif await self._store.remove_acquaintance_via(requester, target, room_id):
            await self._changed(requester, target, False)

    async def rebuild(self) -> int:
        """Recompute every contact room under the rule, from the rooms themselves (also those
        indexed by an earlier, laxer rule); returns how many rooms were looked at."""
        room_ids = await self._store.get_all_contact_room_ids()
        for room_id in room_ids:
            await self._apply_memberships(room_id)
        return len(room_ids)
