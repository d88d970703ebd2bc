"""Contact requests and acquaintances as Matrix rooms and events.

A contact request is a direct chat (`is_direct`, `trusted_private_chat`) whose state holds
`org.laiwang.acquaintance` (state key "") `{"requester", "target", "message"}`. The target
accepts by joining and declines by rejecting the invite, with any client. Two users are
acquaintances while both are joined to such a room.

Which rooms count is decided by `room_acquaintance` from what a server can check itself, never
from the state's word alone: anyone with power in a room can write any content into that state.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import attr

from rooms.errors import InvalidParam
from rooms.validation import is_user_id, optional_str, reject_unknown_keys, require_user_id

ACQUAINTANCE_STATE = "org.laiwang.acquaintance"
MAX_MESSAGE_LEN = 500

# `source` of an acquaintance, as `GET /contacts` reports it.
SOURCE_ADDRESS_BOOK = "address_book"  # the requester had the target in their address book
SOURCE_REQUEST = "request"  # a contact request without an address-book match
SOURCE_IMPORT = "import"  # an existing direct chat turned into an acquaintance
SOURCES = (SOURCE_ADDRESS_BOOK, SOURCE_REQUEST, SOURCE_IMPORT)

# Request states, derived from the two memberships.
PENDING = "pending"  # requester joined, target invited
ACCEPTED = "accepted"  # both joined
DECLINED = "declined"  # target rejected the invite / left, requester still there
ENDED = "ended"  # requester left (cancelled, or the acquaintance ended)


@attr.s(frozen=True, slots=True, auto_attribs=True)
class Acquaintance:
    """The content of an `org.laiwang.acquaintance` state event."""

    requester: str
    target: str
    message: str | None = None
    source: str = SOURCE_REQUEST

    def to_content(self) -> dict[str, Any]:
        content: dict[str, Any] = {"requester": self.requester, "target": self.target}
        if self.message:
            content["message"] = self.message
        if self.source == SOURCE_IMPORT:
            content["source"] = SOURCE_IMPORT
        return content

    def other(self, user_id: str) -> str:
        return self.target if user_id == self.requester else self.requester


def parse_acquaintance(content: Any) -> Acquaintance | None:
    """The acquaintance a state event's content names, or None if it is malformed."""
    if not isinstance(content, Mapping):
        return None
    requester, target = content.get("requester"), content.get("target")
    if not is_user_id(requester) or not is_user_id(target) or requester == target:
        return None
    message = content.get("message")
    if not isinstance(message, str):
        message = None
    source = SOURCE_IMPORT if content.get("source") == SOURCE_IMPORT else SOURCE_REQUEST
    return Acquaintance(str(requester), str(target), message, source)


def find_in_stripped_state(stripped: Iterable[Any]) -> Acquaintance | None:
    """The acquaintance named in an invite's stripped state (`invite_room_state`)."""
    for ev in stripped:
        if (
            isinstance(ev, Mapping)
            and ev.get("type") == ACQUAINTANCE_STATE
            and ev.get("state_key") == ""
        ):
            return parse_acquaintance(ev.get("content"))
    return None


def find_in_initial_state(initial_state: Any) -> Acquaintance | None:
    """The acquaintance named in a /createRoom body's `initial_state`."""
    if not isinstance(initial_state, list):
        return None
    return find_in_stripped_state(initial_state)


# Join rules of a private room (`private` is the spec's reserved alias of `invite`).
PRIVATE_JOIN_RULES = ("invite", "private")


@attr.s(frozen=True, slots=True, auto_attribs=True)
class Invite:
    """An invite in a room, as this server has it (also an out-of-band one)."""

    sender: str
    invitee: str
    is_direct: bool  # `is_direct: true` in the invite's content
    request: Acquaintance | None  # the request its stripped state named, if any
    # The invite went through this server's invite policy: sent by a local user, or received
    # through federation's /invite. A remote server can put any invite, stripped state
    # included, into a room's history for a join by other means to find; only these count.
    vetted: bool = True


@attr.s(frozen=True, slots=True, auto_attribs=True)
class RoomFacts:
    """What the contact-room rule reads of a room this server is in."""

    creator: str  # the sender of `m.room.create`
    plain: bool  # no room type (space, ...) and no cluster state
    join_rule: str | None
    # Everyone with a membership in the room's current state: whoever was ever invited, joined,
    # knocked or banned keeps one there.
    members: Mapping[str, str]
    invites: tuple[Invite, ...]
    # The current `org.laiwang.acquaintance` state and its sender (None if absent or malformed).
    marker: Acquaintance | None = None
    marker_sender: str | None = None


def invite_from_event(
    sender: str, invitee: str, content: Any, stripped: Any, vetted: bool
) -> Invite:
    """An invite event's parts as the rule reads them (`stripped`: its `invite_room_state`)."""
    is_direct = isinstance(content, Mapping) and content.get("is_direct") is True
    request = find_in_stripped_state(stripped) if isinstance(stripped, (list, tuple)) else None
    return Invite(sender, invitee, is_direct, request, vetted)


def only_the_two(facts: RoomFacts, a: str, b: str) -> bool:
    """Whether nobody but a and b ever had a membership in a plain room."""
    pair = {a, b}
    return (
        facts.plain
        and set(facts.members) <= pair
        and all(i.invitee in pair and i.sender in pair for i in facts.invites)
    )


def request_of_room(facts: RoomFacts) -> Acquaintance | None:
    """The contact request a room carries: the room's creator invited the other with the request
    already in the room (the invite's stripped state named the two, creator first), and nobody
    else was ever a member. Later writes of the state, by anyone, change nothing."""
    for invite in facts.invites:
        request = invite.request
        if (
            request is not None
            and invite.vetted
            and request.requester == invite.sender == facts.creator
            and request.target == invite.invitee
            and only_the_two(facts, request.requester, request.target)
        ):
            return attr.evolve(request, source=SOURCE_REQUEST)
    return None


def _imported_shape(facts: RoomFacts, a: str, b: str) -> bool:
    """A private room of a and b alone, made by one of them, the other invited as a direct chat."""
    if facts.creator not in (a, b) or facts.join_rule not in PRIVATE_JOIN_RULES:
        return False
    if not only_the_two(facts, a, b):
        return False
    other = b if facts.creator == a else a
    return any(
        i.vetted and i.is_direct and i.sender == facts.creator and i.invitee == other
        for i in facts.invites
    )


def importable(facts: RoomFacts, a: str, b: str) -> bool:
    """Whether `POST /contacts/import` may turn a and b's room into an acquaintance: a private
    room whose only members ever were those two, both joined, the invite marked direct."""
    return (
        a != b
        and _imported_shape(facts, a, b)
        and facts.members.get(a) == "join"
        and facts.members.get(b) == "join"
    )


def room_acquaintance(facts: RoomFacts) -> tuple[Acquaintance, str] | None:
    """The pair a room makes acquaintances of, with the request state; None if the room is no
    contact room. A contact request (`request_of_room`) comes first; else an import, marked by
    its requester (the one who imported) in a room of the import's shape."""
    request = request_of_room(facts)
    if request is not None:
        members = facts.members
        return request, request_state(members.get(request.requester), members.get(request.target))
    marker = facts.marker
    if (
        marker is not None
        and marker.source == SOURCE_IMPORT
        and facts.marker_sender == marker.requester
        and _imported_shape(facts, marker.requester, marker.target)
    ):
        both = facts.members.get(marker.requester) == facts.members.get(marker.target) == "join"
        return attr.evolve(marker, message=None), ACCEPTED if both else ENDED
    return None


def request_state(requester_membership: str | None, target_membership: str | None) -> str:
    if requester_membership != "join":
        return ENDED
    if target_membership == "join":
        return ACCEPTED
    if target_membership == "invite":
        return PENDING
    return DECLINED


def validate_request_body(body: Mapping[str, Any], caller: str) -> tuple[str, str | None]:
    """`POST /contacts/requests` → (target, message)."""
    reject_unknown_keys(body, ("user_id", "message"))
    target = require_user_id(body, "user_id")
    if target == caller:
        raise InvalidParam("user_id", "is yourself: you cannot send a contact request to yourself")
    message = optional_str(body, "message", max_len=MAX_MESSAGE_LEN)
    return target, message or None


def request_allowed_by_setting(accept_requests_from: str, requester_in_book: bool) -> bool:
    """Whether the target's `accept_requests_from` lets a contact request through."""
    if accept_requests_from == "anyone":
        return True
    if accept_requests_from == "address_book":
        return requester_in_book
    return False


def request_source(target_in_requesters_book: bool, target_discoverable: bool) -> str:
    """How a contact request met its target. `address_book` only for a discoverable target:
    both see the source, and for a hidden target it would confirm that the requester holds
    their number."""
    if target_in_requesters_book and target_discoverable:
        return SOURCE_ADDRESS_BOOK
    return SOURCE_REQUEST


def is_ignored(ignored_user_list: Any, user_id: str) -> bool:
    """Whether `m.ignored_user_list` account data content names `user_id`."""
    if not isinstance(ignored_user_list, Mapping):
        return False
    ignored = ignored_user_list.get("ignored_users")
    return isinstance(ignored, Mapping) and user_id in ignored


def direct_chats(m_direct: Any) -> list[tuple[str, str]]:
    """(other user, room id) pairs from `m.direct` account data content."""
    if not isinstance(m_direct, Mapping):
        return []
    out: list[tuple[str, str]] = []
    for user_id, rooms in m_direct.items():
        # Synapse hands out account data frozen: lists arrive as tuples.
        if is_user_id(user_id) and isinstance(rooms, (list, tuple)):
            out.extend((user_id, r) for r in rooms if isinstance(r, str))
    return out
