"""The pure contact-room rule in rooms/contacts.py: which rooms make whom acquainted."""

from __future__ import annotations

from typing import Any

import attr
from hypothesis import given
from hypothesis import strategies as st

from rooms.contacts import (
    ACCEPTED,
    DECLINED,
    ENDED,
    PENDING,
    SOURCE_ADDRESS_BOOK,
    SOURCE_IMPORT,
    SOURCE_REQUEST,
    Acquaintance,
    Invite,
    RoomFacts,
    importable,
    invite_from_event,
    request_of_room,
    request_source,
    room_acquaintance,
)

A, B, C = "@a:one.test", "@b:two.test", "@c:one.test"
REQUEST = Acquaintance(A, B, "hi")


def contact_room(**changes: Any) -> RoomFacts:
    """A room in which B accepted A's contact request, as the module makes them."""
    facts = RoomFacts(
        creator=A,
        plain=True,
        join_rule="invite",
        members={A: "join", B: "join"},
        invites=(Invite(A, B, True, REQUEST, True),),
        marker=REQUEST,
        marker_sender=A,
    )
    return attr.evolve(facts, **changes)


def direct_chat(**changes: Any) -> RoomFacts:
    """A direct chat B was invited to by A, without any request."""
    base = contact_room(invites=(Invite(A, B, True, None, True),), marker=None, marker_sender=None)
    return attr.evolve(base, **changes)


def test_a_contact_room_makes_its_pair_acquainted():
    assert room_acquaintance(contact_room()) == (REQUEST, ACCEPTED)
    members = {A: "join", B: "invite"}
    assert room_acquaintance(contact_room(members=members)) == (REQUEST, PENDING)
    assert room_acquaintance(contact_room(members={A: "join", B: "leave"})) == (REQUEST, DECLINED)
    assert room_acquaintance(contact_room(members={A: "leave", B: "join"})) == (REQUEST, ENDED)


def test_the_state_alone_makes_nobody_acquainted():
    # The request was never in an invite: written into a room the two happen to share.
    assert room_acquaintance(direct_chat(marker=REQUEST, marker_sender=A)) is None
    # The invite named someone else, or was sent by someone else than the creator.
    other = Invite(A, B, True, Acquaintance(C, B), True)
    assert room_acquaintance(contact_room(invites=(other,), marker=None)) is None
    assert room_acquaintance(contact_room(creator=C, marker=None)) is None
    # An invite this server's policy never saw (put into the room's history by another server).
    unvetted = Invite(A, B, True, REQUEST, False)
    assert room_acquaintance(contact_room(invites=(unvetted,), marker=None)) is None


def test_a_third_member_ever_undoes_the_room():
    assert room_acquaintance(contact_room(members={A: "join", B: "join", C: "leave"})) is None
    extra = (Invite(A, B, True, REQUEST, True), Invite(B, C, False, None, True))
    assert room_acquaintance(contact_room(invites=extra)) is None
    assert room_acquaintance(contact_room(plain=False)) is None


def test_rewrites_of_the_state_change_nothing():
    for marker, sender in (
        (Acquaintance(A, C), A),
        (Acquaintance(C, A), B),
        (Acquaintance(B, A, None, SOURCE_IMPORT), B),
        (None, None),
    ):
        assert room_acquaintance(contact_room(marker=marker, marker_sender=sender)) == (
            REQUEST,
            ACCEPTED,
        )


def test_import_rule():
    assert importable(direct_chat(), A, B) and importable(direct_chat(), B, A)
    assert not importable(direct_chat(join_rule="public"), A, B)
    assert not importable(direct_chat(join_rule="knock"), A, B)
    assert not importable(direct_chat(plain=False), A, B)
    assert not importable(direct_chat(members={A: "join", B: "invite"}), A, B)
    assert not importable(direct_chat(members={A: "join", B: "join", C: "leave"}), A, B)
    assert not importable(direct_chat(invites=(Invite(A, B, False, None, True),)), A, B)
    assert not importable(direct_chat(invites=(Invite(A, B, True, None, False),)), A, B)
    assert not importable(direct_chat(invites=()), A, B)
    assert not importable(direct_chat(creator=C), A, B)
    assert not importable(direct_chat(), A, C)
    assert not importable(direct_chat(), A, A)


def test_an_import_is_kept_by_its_marker():
    marker = Acquaintance(B, A, None, SOURCE_IMPORT)
    assert room_acquaintance(direct_chat(marker=marker, marker_sender=B)) == (marker, ACCEPTED)
    left = direct_chat(marker=marker, marker_sender=B, members={A: "leave", B: "join"})
    assert room_acquaintance(left) == (marker, ENDED)
    # Marked by someone else than the one it names as importing, or not as an import.
    assert room_acquaintance(direct_chat(marker=marker, marker_sender=A)) is None
    assert room_acquaintance(direct_chat(marker=Acquaintance(B, A), marker_sender=B)) is None
    assert (
        room_acquaintance(direct_chat(marker=marker, marker_sender=B, join_rule="public")) is None
    )


def test_invite_from_event():
    stripped = [
        {"type": "m.room.create", "state_key": "", "content": {}},
        {
            "type": "org.laiwang.acquaintance",
            "state_key": "",
            "content": {"requester": A, "target": B},
        },
    ]
    content = {"membership": "invite", "is_direct": True}
    invite = invite_from_event(A, B, content, stripped, True)
    assert invite == Invite(A, B, True, Acquaintance(A, B), True)
    # Frozen event data arrives as tuples; odd shapes mean no request and not direct.
    assert invite_from_event(A, B, {}, tuple(stripped), True).request
    assert invite_from_event(A, B, {"is_direct": "yes"}, None, False) == Invite(
        A, B, False, None, False
    )
    assert invite_from_event(A, B, None, "x", True).request is None


users = st.sampled_from([A, B, C, "@d:two.test"])
memberships = st.sampled_from(["join", "invite", "leave", "ban", "knock"])
invites = st.builds(
    Invite,
    users,
    users,
    st.booleans(),
    st.one_of(st.none(), st.builds(Acquaintance, users, users)),
    st.booleans(),
)
facts = st.builds(
    RoomFacts,
    creator=users,
    plain=st.booleans(),
    join_rule=st.sampled_from([None, "invite", "public", "knock", "private"]),
    members=st.dictionaries(users, memberships, max_size=4),
    invites=st.lists(invites, max_size=3).map(tuple),
    marker=st.one_of(
        st.none(),
        st.builds(Acquaintance, users, users, st.none(), st.sampled_from(["request", "import"])),
    ),
    marker_sender=st.one_of(st.none(), users),
)


@given(facts)
def test_whatever_the_room_only_its_own_two_can_be_paired(room: RoomFacts):
    found = room_acquaintance(room)
    if found is None:
        return
    pair, state = found
    people = {pair.requester, pair.target}
    assert len(people) == 2 and room.plain
    # Nobody else was ever a member, and one of the two made the room.
    assert set(room.members) <= people and room.creator in people
    assert all(i.invitee in people and i.sender in people for i in room.invites)
    # Acquainted only when both are joined, and only through an invite this server vetted:
    # a request the creator sent the other, or a direct chat's invite for an import.
    if state == ACCEPTED:
        assert all(room.members.get(u) == "join" for u in people)
    assert any(i.vetted and i.sender == room.creator for i in room.invites)
    if pair.source != SOURCE_IMPORT:
        assert request_of_room(room) == pair and pair.requester == room.creator
    else:
        assert room.marker_sender == pair.requester and room.join_rule in ("invite", "private")


@given(facts, st.sampled_from([A, B, C]), st.sampled_from([A, B, C]))
def test_importable_needs_both_joined_and_no_one_else(room: RoomFacts, a: str, b: str):
    if importable(room, a, b):
        assert a != b and room.members.get(a) == room.members.get(b) == "join"
        assert set(room.members) == {a, b} and room.join_rule in ("invite", "private")


def test_the_source_names_the_address_book_only_for_a_discoverable_target():
    assert request_source(True, True) == SOURCE_ADDRESS_BOOK
    # A hidden target: `address_book` would confirm the requester holds their number.
    assert request_source(True, False) == SOURCE_REQUEST
    assert request_source(False, True) == SOURCE_REQUEST
    assert request_source(False, False) == SOURCE_REQUEST
