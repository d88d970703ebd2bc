"""Consent: no acquaintance that its two people did not choose, as an attacker tries to mint one.

Each attack is tried by a local stranger and by the remote `attacker` server (a plain Synapse that
sends any state it has power for), and each asserts that nothing changed for the victim: their
contacts, their invites (a stranger's invite is still 403), their timeline's members, their
requests, and a cluster's knocks.
"""

from __future__ import annotations

import time
from urllib.parse import quote

import pytest

from tests.e2e.test_contacts import contacts, forbidden
from tests.harness.client import MatrixClient, MatrixError, wait_until
from tests.harness.servers import execute
from tests.harness.social import make_acquainted

ACQ = "org.laiwang.acquaintance"
# How long an index update of a federated or local event takes at most in these tests: long
# enough that an attack which works shows up (checked against the code before the fix).
SETTLE_S = 3.0


def timeline(user: MatrixClient) -> str:
    return str(user.laiwang("GET", "/timeline")["room_id"])


def no_requests(user: MatrixClient) -> bool:
    return user.laiwang("GET", "/contacts/requests") == {"incoming": [], "outgoing": []}


def assert_strangers(victim: MatrixClient, others: list[MatrixClient]) -> None:
    """Nothing the victim did not choose: no contact, no invite, no timeline membership."""
    assert contacts(victim) == {}
    assert no_requests(victim)
    victims_timeline = timeline(victim)
    for other in others:
        if other.user_id.split(":", 1)[1] == victim.user_id.split(":", 1)[1]:
            assert victim.user_id not in contacts(other)
            assert no_requests(other)
        assert victim.membership(victims_timeline, other.user_id) is None
        room = other.create_room(preset="private_chat")
        forbidden(lambda: other.invite(room, victim.user_id))  # noqa: B023
        assert room not in victim.invited_rooms()


def test_local_stranger_forges_acquaintance_state(hs1):
    victim, mallory, carol = hs1.new_user("victim"), hs1.new_user("mallory"), hs1.new_user("carol")
    # A public room with only the two of them, the forged request set after the victim joined.
    room = mallory.create_room(preset="public_chat")
    victim.join(room)
    mallory.put_state(room, ACQ, {"requester": mallory.user_id, "target": victim.user_id})
    # The same, present at creation of a public room the victim joins without any invite.
    made = mallory.create_room(
        preset="public_chat",
        initial_state=[
            {
                "type": ACQ,
                "state_key": "",
                "content": {"requester": mallory.user_id, "target": victim.user_id},
            }
        ],
    )
    victim.join(made)
    # Pairing two strangers: mallory names carol as the one who asked the victim.
    pair = mallory.create_room(preset="public_chat")
    victim.join(pair)
    carol.join(pair)
    mallory.put_state(pair, ACQ, {"requester": carol.user_id, "target": victim.user_id})
    time.sleep(SETTLE_S)
    assert_strangers(victim, [mallory, carol])
    assert contacts(carol) == {} and contacts(mallory) == {}


def test_rewriting_a_real_contact_room_mints_nothing(hs1):
    alice, bob, carol = hs1.new_user("alice"), hs1.new_user("bob"), hs1.new_user("carol")
    room = make_acquainted(alice, bob)
    make_acquainted(bob, carol)
    # bob, the target, has power 100 in alice's contact room: he brings in his sybil carol (his
    # acquaintance, so the policy lets him) and rewrites the request to pair alice with carol,
    # each way round.
    bob.invite(room, carol.user_id)
    carol.join(room)
    for content in (
        {"requester": alice.user_id, "target": carol.user_id},
        {"requester": carol.user_id, "target": alice.user_id},
    ):
        bob.put_state(room, ACQ, content)
    time.sleep(SETTLE_S)
    assert carol.user_id not in contacts(alice)
    assert set(contacts(carol)) == {bob.user_id}
    assert alice.membership(timeline(alice), carol.user_id) is None
    other = carol.create_room(preset="private_chat")
    forbidden(lambda: carol.invite(other, alice.user_id))
    # A room anyone else was ever a member of is no contact room: alice and bob's acquaintance
    # rested on it and ends with it (bob could end it anyway by leaving).
    assert contacts(alice) == {}
    # A rebuild recomputes the same under the rule.
    admin = hs1.new_user("admin", admin=True)
    admin.laiwang("POST", "/admin/contacts/rebuild", {})
    assert contacts(alice) == {} and set(contacts(carol)) == {bob.user_id}


def test_the_request_is_what_the_invite_carried(hs1):
    """Rewrites of the state by the requester, in a contact room of the two alone, change
    nothing: the pair is the one the target was asked about."""
    alice, bob, carol = hs1.new_user("alice"), hs1.new_user("bob"), hs1.new_user("carol")
    room = make_acquainted(alice, bob)
    for content in (
        {"requester": alice.user_id, "target": carol.user_id},
        {"requester": bob.user_id, "target": alice.user_id},
        {"requester": alice.user_id, "target": bob.user_id, "source": "import"},
    ):
        alice.put_state(room, ACQ, content)
        bob.put_state(room, ACQ, content)
    time.sleep(SETTLE_S)
    assert set(contacts(alice)) == {bob.user_id}
    assert contacts(alice)[bob.user_id]["room_id"] == room
    assert set(contacts(bob)) == {alice.user_id} and contacts(carol) == {}


@pytest.mark.federation
def test_remote_attacker_forges_acquaintance_state(hs1, attacker):
    victim = hs1.new_user("victim")
    m, sybil = attacker.new_user("m"), attacker.new_user("sybil")
    room = m.create_room(preset="public_chat")
    victim.join(room, via=[attacker.server_name])
    sybil.join(room, via=[hs1.server_name])
    m.put_state(room, ACQ, {"requester": m.user_id, "target": victim.user_id})
    # The victim's server has seen the forged state (it is in the room) ...
    wait_until(lambda: victim.state(room, ACQ).get("requester") == m.user_id, timeout=60)
    # ... and a second forgery pairs the victim with a sybil, named by m.
    m.put_state(room, ACQ, {"requester": sybil.user_id, "target": victim.user_id})
    wait_until(lambda: victim.state(room, ACQ).get("requester") == sybil.user_id, timeout=60)
    # A two-person public room where the request was there from the start.
    made = m.create_room(
        preset="public_chat",
        initial_state=[
            {
                "type": ACQ,
                "state_key": "",
                "content": {"requester": m.user_id, "target": victim.user_id},
            }
        ],
    )
    victim.join(made, via=[attacker.server_name])
    time.sleep(SETTLE_S)
    assert_strangers(victim, [m, sybil])


@pytest.mark.federation
def test_remote_target_rewrites_a_real_contact_room(hs1, attacker):
    alice = hs1.new_user("alice")
    bob, sybil = attacker.new_user("bob"), attacker.new_user("sybil")
    room = alice.laiwang("POST", "/contacts/requests", {"user_id": bob.user_id})["room_id"]
    wait_until(lambda: room in bob.invited_rooms(), timeout=60)
    bob.join_invited(room, via=[hs1.server_name])
    wait_until(lambda: bob.user_id in contacts(alice), timeout=60)
    # bob's server (power 100 in the room) brings in a sybil and rewrites the request to pair
    # alice with it.
    bob.invite(room, sybil.user_id)
    sybil.join_invited(room, via=[hs1.server_name])  # hs1 may not have the invite yet
    for content in (
        {"requester": alice.user_id, "target": sybil.user_id},
        {"requester": sybil.user_id, "target": alice.user_id},
    ):
        bob.put_state(room, ACQ, content)
    wait_until(lambda: alice.state(room, ACQ).get("requester") == sybil.user_id, timeout=60)
    time.sleep(SETTLE_S)
    assert sybil.user_id not in contacts(alice)
    assert alice.membership(timeline(alice), sybil.user_id) is None
    other = sybil.create_room(preset="private_chat")
    forbidden(lambda: sybil.invite(other, alice.user_id))
    assert no_requests(alice)
    # No longer a room of two: the acquaintance that rested on it ended.
    assert contacts(alice) == {}


@pytest.mark.federation
def test_remote_invites_need_a_request_the_victim_allows(hs1, attacker):
    victim, carol = hs1.new_user("victim"), hs1.new_user("carol")
    m = attacker.new_user("m")

    def request_room(requester: str) -> str:
        return m.create_room(
            preset="private_chat",
            initial_state=[
                {
                    "type": ACQ,
                    "state_key": "",
                    "content": {"requester": requester, "target": victim.user_id},
                }
            ],
        )

    # Refused by default (address_book), and when the stripped state names someone else.
    room = request_room(m.user_id)
    forbidden(lambda: m.invite(room, victim.user_id))
    victim.laiwang("PUT", "/settings", {"accept_requests_from": "anyone"})
    for requester in (carol.user_id, attacker.user_id("other")):
        named = request_room(requester)
        forbidden(lambda: m.invite(named, victim.user_id))  # noqa: B023
    assert contacts(victim) == {} and no_requests(victim) and contacts(carol) == {}
    # Allowed now: a pending incoming request, which grants nothing until the victim joins.
    room = request_room(m.user_id)
    m.invite(room, victim.user_id)
    incoming = wait_until(lambda: victim.laiwang("GET", "/contacts/requests")["incoming"])
    assert [(r["user_id"], r["room_id"]) for r in incoming] == [(m.user_id, room)]
    assert contacts(victim) == {}
    assert victim.membership(timeline(victim), m.user_id) is None
    other = m.create_room(preset="private_chat")
    forbidden(lambda: m.invite(other, victim.user_id))
    # The victim's own join is the consent: now they are acquaintances.
    victim.join(room, via=[attacker.server_name])
    wait_until(lambda: m.user_id in contacts(victim), timeout=60)


def test_forged_acquaintance_gets_no_knock_approved(hs1):
    a, b, mallory = hs1.new_user("a"), hs1.new_user("b"), hs1.new_user("mallory")
    make_acquainted(a, b)
    cluster = a.laiwang("POST", "/clusters", {"topic": "Board games"})["room_id"]
    # mallory forges an acquaintance with a, whose server approves knocks of a's acquaintances.
    forged = mallory.create_room(preset="public_chat")
    a.join(forged)
    mallory.put_state(forged, ACQ, {"requester": mallory.user_id, "target": a.user_id})
    time.sleep(SETTLE_S)
    mallory.call("POST", f"/_matrix/client/v3/knock/{quote(cluster)}", {})
    # A friend's knock after it is approved: the approvals ran.
    b.call("POST", f"/_matrix/client/v3/knock/{quote(cluster)}", {})
    wait_until(lambda: a.membership(cluster, b.user_id) in ("invite", "join"))
    time.sleep(1)
    assert a.membership(cluster, mallory.user_id) == "knock"
    assert contacts(a) == {b.user_id: contacts(a)[b.user_id]}


@pytest.mark.federation
def test_remote_forged_acquaintance_gets_no_knock_approved(hs1, attacker):
    a, b = hs1.new_user("a"), hs1.new_user("b")
    m = attacker.new_user("m")
    make_acquainted(a, b)
    cluster = a.laiwang("POST", "/clusters", {"topic": "Chess"})["room_id"]
    forged = m.create_room(preset="public_chat")
    a.join(forged, via=[attacker.server_name])
    m.put_state(forged, ACQ, {"requester": m.user_id, "target": a.user_id})
    wait_until(lambda: a.state(forged, ACQ).get("requester") == m.user_id, timeout=60)
    time.sleep(SETTLE_S)
    m.call(
        "POST",
        f"/_matrix/client/v3/knock/{quote(cluster)}",
        {},
        params={"server_name": [hs1.server_name]},
    )
    wait_until(lambda: a.membership(cluster, m.user_id) == "knock", timeout=60)
    time.sleep(SETTLE_S)
    assert a.membership(cluster, m.user_id) == "knock"
    assert set(contacts(a)) == {b.user_id}


def test_import_takes_only_private_two_person_direct_chats(hs1):
    caller = hs1.new_user("caller")
    # Admins may invite strangers: each sets up one kind of room with the caller.
    legit, cluster_maker, third, plain, ignored = (
        hs1.new_user(n, admin=True) for n in ("legit", "clus", "third", "plain", "ignored")
    )
    pub, extra = hs1.new_user("pub"), hs1.new_user("extra")

    def direct_chat(inviter: MatrixClient, *invitees: MatrixClient) -> str:
        room = inviter.create_room(
            preset="trusted_private_chat",
            is_direct=True,
            invite=[u.user_id for u in invitees],
        )
        for u in invitees:
            wait_until(lambda: room in u.invited_rooms())  # noqa: B023
            u.join(room)
        return room

    rooms = {legit.user_id: direct_chat(legit, caller)}
    public = pub.create_room(preset="public_chat")
    caller.join(public)
    rooms[pub.user_id] = public
    cluster = cluster_maker.laiwang(
        "POST", "/clusters", {"topic": "Two only", "invite": [caller.user_id]}
    )["room_id"]
    wait_until(lambda: cluster in caller.invited_rooms())
    caller.join(cluster)
    rooms[cluster_maker.user_id] = cluster
    with_third = direct_chat(third, caller, extra)
    extra.leave(with_third)  # only two are left, but a third was a member
    rooms[third.user_id] = with_third
    not_direct = plain.create_room(preset="private_chat", invite=[caller.user_id])
    wait_until(lambda: not_direct in caller.invited_rooms())
    caller.join(not_direct)
    rooms[plain.user_id] = not_direct
    rooms[ignored.user_id] = direct_chat(ignored, caller)
    caller.set_account_data("m.ignored_user_list", {"ignored_users": {ignored.user_id: {}}})

    caller.set_account_data("m.direct", {user: [room] for user, room in rooms.items()})
    assert caller.laiwang("POST", "/contacts/import") == {"imported": 1, "skipped": 5}
    assert set(contacts(caller)) == {legit.user_id}
    assert contacts(caller)[legit.user_id]["source"] == "import"
    wait_until(lambda: caller.user_id in contacts(legit))
    time.sleep(1)
    for other in (pub, cluster_maker, third, plain, ignored):
        assert contacts(other) == {}
    for room in (public, cluster, with_third, not_direct):
        with pytest.raises(MatrixError) as e:
            caller.state(room, ACQ)
        assert (e.value.status, e.value.errcode) == (404, "M_NOT_FOUND"), e.value.body
    # Again: the legit chat is an acquaintance already, the others are skipped again.
    assert caller.laiwang("POST", "/contacts/import", {}) == {"imported": 0, "skipped": 5}
    # A rebuild keeps the import and finds nothing in the skipped rooms.
    hs1.new_user("admin", admin=True).laiwang("POST", "/admin/contacts/rebuild", {})
    assert set(contacts(caller)) == {legit.user_id}
    assert caller.user_id in contacts(legit)


def test_stranger_imports_a_shared_public_room(hs1):
    victim, mallory = hs1.new_user("victim"), hs1.new_user("mallory")
    public = mallory.create_room(preset="public_chat")
    victim.join(public)
    mallory.set_account_data("m.direct", {victim.user_id: [public]})
    assert mallory.laiwang("POST", "/contacts/import") == {"imported": 0, "skipped": 1}
    time.sleep(1)
    assert_strangers(victim, [mallory])


def test_rebuild_removes_pairs_an_earlier_rule_indexed(hs1):
    """A database indexed by the old rule may hold forged pairs: a rebuild removes them."""
    victim, mallory = hs1.new_user("victim"), hs1.new_user("mallory")
    alice = hs1.new_user("alice")
    real = make_acquainted(alice, victim)
    room = mallory.create_room(preset="public_chat")
    victim.join(room)
    mallory.put_state(room, ACQ, {"requester": mallory.user_id, "target": victim.user_id})
    # What the old rule wrote for that state (if it has not: the code before the fix did),
    # written while Synapse runs,
    # and a forged pair through the real contact room.
    carol = hs1.new_user("carol")
    execute(
        hs1,
        "INSERT INTO laiwang_contact_rooms (room_id, requester, target, message, source,"
        " state, created_ts, updated_ts) VALUES (?, ?, ?, NULL, 'request', 'accepted', 1, 1)"
        " ON CONFLICT DO NOTHING",
        room,
        mallory.user_id,
        victim.user_id,
    )
    for a, b, via in (
        (mallory, victim, room),
        (victim, mallory, room),
        (carol, victim, real),
        (victim, carol, real),
    ):
        execute(
            hs1,
            "INSERT INTO laiwang_acquaintances (user_id, other_id, room_id, source, since_ts)"
            " VALUES (?, ?, ?, 'request', 1) ON CONFLICT DO NOTHING",
            a.user_id,
            b.user_id,
            via,
        )
    assert set(contacts(victim)) == {alice.user_id, mallory.user_id, carol.user_id}
    admin = hs1.new_user("admin", admin=True)
    admin.laiwang("POST", "/admin/contacts/rebuild", {})
    assert set(contacts(victim)) == {alice.user_id}
    assert contacts(mallory) == {} and contacts(carol) == {}
    assert contacts(victim)[alice.user_id]["room_id"] == real
    for other in (mallory, carol):
        fresh = other.create_room(preset="private_chat")
        forbidden(lambda: other.invite(fresh, victim.user_id))  # noqa: B023
