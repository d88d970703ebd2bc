"""Shares against a malicious server (`attacker`, a plain Synapse) and local strangers: fake
timelines, future-dated posts, relations from other rooms, forged forwards. Each test is the
attack as the attacker makes it, then the exact outcome and that nothing else changed for the
victim."""

from __future__ import annotations

import time
import uuid
from typing import Any
from urllib.parse import quote

import pytest

from tests.harness.client import MatrixClient, MatrixError, wait_until
from tests.harness.servers import execute
from tests.harness.social import make_acquainted

TIMELINE = "org.laiwang.timeline"
HOUR_MS = 3600 * 1000
# The victim's server accepts a timeline invite a second after it sees it, then joins.
ACCEPT_SETTLES_S = 8


def timeline(user: MatrixClient) -> str:
    return str(user.laiwang("GET", "/timeline")["room_id"])


def feed(user: MatrixClient) -> list[dict[str, Any]]:
    return list(user.laiwang("GET", "/feed", params={"limit": 100})["chunk"])


def feed_ids(user: MatrixClient) -> list[str]:
    return [c["event_id"] for c in feed(user)]


def joined_rooms(user: MatrixClient) -> set[str]:
    return set(user.call("GET", "/_matrix/client/v3/joined_rooms")["joined_rooms"])


def contacts(user: MatrixClient) -> set[str]:
    return {c["user_id"] for c in user.laiwang("GET", "/contacts")["contacts"]}


def reaction(target: str, key: str = "👍") -> dict[str, Any]:
    return {"m.relates_to": {"rel_type": "m.annotation", "event_id": target, "key": key}}


def acquainted_with_attacker(victim: MatrixClient, hs1: Any, attacker: Any) -> MatrixClient:
    """A user of the malicious server who is the victim's acquaintance (a real contact request
    from the victim; no module there, so the attacker joins by hand)."""
    pete = attacker.new_user("pete")
    contact = victim.laiwang("POST", "/contacts/requests", {"user_id": pete.user_id})
    wait_until(lambda: contact["room_id"] in pete.invited_rooms(), timeout=60)
    pete.join_invited(contact["room_id"], via=[hs1.server_name])
    wait_until(lambda: pete.user_id in contacts(victim), timeout=60)
    return pete


def hand_made_timeline(owner: MatrixClient, name: str = "timeline") -> str:
    """A room made as a module-run server makes a timeline: created by the owner, with the
    owner's `org.laiwang.timeline` state in it."""
    return owner.create_room(
        preset="private_chat",
        name=name,
        initial_state=[{"type": TIMELINE, "state_key": "", "content": {"owner": owner.user_id}}],
    )


def real_attacker_timeline(victim: MatrixClient, pete: MatrixClient) -> str:
    """pete's one timeline, which the victim's server joins (the legitimate flow)."""
    room = hand_made_timeline(pete)
    pete.invite(room, victim.user_id)
    wait_until(lambda: room in joined_rooms(victim), timeout=60)
    return room


def send_at(attacker: Any, user: MatrixClient, room: str, content: dict, ts: int) -> str:
    path = f"/_matrix/client/v3/rooms/{quote(room)}/send/m.room.message/{uuid.uuid4().hex}"
    return str(attacker.impersonate(user).call("PUT", path, content, params={"ts": ts})["event_id"])


def test_only_the_owners_one_real_timeline_is_auto_joined(hs1, attacker):
    """Item 3: the acquaintance's server invites the victim to many "timelines"; the victim's
    server joins only the owner's one real timeline, and leaves a room that turns out not to be
    one."""
    alice = hs1.new_user("alice")
    pete = acquainted_with_attacker(alice, hs1, attacker)
    bob = attacker.new_user("bob")  # another user of the malicious server
    rooms_before = joined_rooms(alice)

    # A decoy: a timeline when invited, not one any more when alice's server joins it.
    decoy = hand_made_timeline(pete, "decoy")
    pete.invite(decoy, alice.user_id)
    pete.put_state(decoy, TIMELINE, {})
    wait_until(lambda: alice.membership(decoy, alice.user_id) == "leave", timeout=60)

    # The real timeline comes next, and is joined.
    real = real_attacker_timeline(alice, pete)

    # Five more "timelines" of pete's, and one that bob created for pete: none is joined.
    fakes = [hand_made_timeline(pete, f"fake {i}") for i in range(5)]
    foreign = bob.create_room(
        preset="private_chat", power_level_content_override={"users": {pete.user_id: 100}}
    )
    bob.invite(foreign, pete.user_id)
    pete.join(foreign)
    pete.put_state(foreign, TIMELINE, {"owner": pete.user_id})
    fakes.append(foreign)
    for room in fakes:
        pete.invite(room, alice.user_id)
        pete.send_text(room, f"fake post in {room}")
    wait_until(lambda: set(fakes) <= alice.invited_rooms(), timeout=60)
    time.sleep(ACCEPT_SETTLES_S)

    assert joined_rooms(alice) == rooms_before | {real}
    assert set(fakes) <= alice.invited_rooms()  # left to alice, as any invite
    assert alice.membership(decoy, alice.user_id) == "leave"
    # The feed has the real timeline's posts only.
    post = pete.send_text(real, "a real post")
    wait_until(lambda: feed_ids(alice) == [post], timeout=60)
    assert pete.user_id in contacts(alice)
    assert joined_rooms(alice) == rooms_before | {real}


def test_a_post_dated_ahead_ranks_as_received(hs1, attacker):
    """Item 7: a post dated 20 h ahead by its server ranks as received, not on top."""
    alice, bob, mallory = hs1.new_user("alice"), hs1.new_user("bob"), hs1.new_user("mallory")
    make_acquainted(alice, bob)
    pete = acquainted_with_attacker(alice, hs1, attacker)
    real = real_attacker_timeline(alice, pete)
    bobs, mine = timeline(bob), timeline(alice)
    wait_until(lambda: bobs in joined_rooms(alice))

    # pete's server dates a post 20 hours ahead; bob posts after it arrived.
    ahead = send_at(
        attacker,
        pete,
        real,
        {"msgtype": "m.text", "body": "from the future"},
        _now() + 20 * HOUR_MS,
    )
    wait_until(lambda: ahead in feed_ids(alice), timeout=60)
    later = bob.send_text(bobs, "posted after")
    wait_until(lambda: feed_ids(alice)[:1] == [later], timeout=30)
    assert feed_ids(alice) == [later, ahead]
    entry = {c["event_id"]: c for c in feed(alice)}[ahead]
    assert entry["origin_server_ts"] > _now() + 19 * HOUR_MS  # served as sent, ranked as received
    # Nothing else changed for alice: her own post still ranks above the future-dated one.
    post = alice.send_text(mine, "my post")
    wait_until(lambda: feed_ids(alice) == [post, later, ahead], timeout=30)
    assert feed_ids(mallory) == []


def test_relations_sent_in_another_room_do_not_count(hs1, attacker):
    """Item 8: a reaction or comment sent in another room about a timeline post does not count
    on it."""
    alice, bob, mallory = hs1.new_user("alice"), hs1.new_user("bob"), hs1.new_user("mallory")
    make_acquainted(alice, bob)
    pete = acquainted_with_attacker(alice, hs1, attacker)
    real = real_attacker_timeline(alice, pete)
    mine, mallorys = timeline(alice), timeline(mallory)
    wait_until(lambda: alice.membership(mine, bob.user_id) == "join")
    rooms_before = joined_rooms(alice)

    # Relations about alice's post sent in another room. pete's server does not have the post
    # (pete never joined alice's timeline), and Synapse lets a client relate to an unknown event
    # only when it already knows a relation to it: the malicious server writes one into its own
    # database, then pete reacts and comments in his timeline, which alice's server is in.
    post = alice.send_text(mine, "my post")
    wait_until(lambda: post in feed_ids(alice))
    execute(
        attacker,
        "INSERT INTO event_relations (event_id, relates_to_id, relation_type)"
        " VALUES ('$planted', ?, 'm.annotation')",
        post,
    )
    thread = {
        "msgtype": "m.text",
        "body": "c",
        "m.relates_to": {"rel_type": "m.thread", "event_id": post},
    }
    remote = [pete.send(real, reaction(post), "m.reaction"), pete.send(real, thread)]
    wait_until(lambda: all(alice.event(real, event_id) for event_id in remote), timeout=60)
    # A local stranger cannot even send one: Synapse refuses relations across rooms from its own
    # clients.
    with pytest.raises(MatrixError) as e:
        mallory.send(mallorys, reaction(post), "m.reaction")
    assert (e.value.status, e.value.errcode) == (400, "M_UNKNOWN"), e.value.body
    # The one reaction in the post's own room counts.
    bob.send(mine, reaction(post, "❤️"), "m.reaction")

    def counts() -> tuple[int, int]:
        item = {c["event_id"]: c for c in feed(alice)}[post]
        return item["reactions"], item["comments"]

    wait_until(lambda: counts() == (1, 0), timeout=30)
    time.sleep(2)
    assert counts() == (1, 0)
    assert feed_ids(alice) == [post]
    assert feed_ids(mallory) == []
    assert joined_rooms(alice) == rooms_before


def test_remote_forwards_are_marked_unless_this_server_can_verify_them(hs1, attacker):
    """Item 9: a malicious server's forward naming a local sender is verified as a local forward
    would be; one that does not check out, or that this server cannot check, is marked
    `unsigned["org.laiwang.forward.verified"]: false` (in the feed and in /event)."""
    alice, carol = hs1.new_user("alice"), hs1.new_user("carol")
    pete = acquainted_with_attacker(alice, hs1, attacker)
    real = real_attacker_timeline(alice, pete)
    mine = timeline(alice)
    wait_until(lambda: mine in pete.invited_rooms(), timeout=60)
    pete.join_invited(mine, via=[hs1.server_name])
    post = alice.send_text(mine, "hello friends")
    wait_until(lambda: pete.event(mine, post), timeout=60)
    # A room pete's server is not in.
    private = alice.create_room(preset="private_chat")
    secret = alice.send_text(private, "between us")
    rooms_before, invites_before = joined_rooms(alice), alice.invited_rooms()

    def forward(room: str, event_id: str, sender: str) -> str:
        block = {"room_id": room, "event_id": event_id, "sender": sender}
        return pete.send(real, {"msgtype": "m.text", "body": "fwd", "org.laiwang.forward": block})

    genuine = forward(mine, post, alice.user_id)
    made_up = forward(mine, "$madeUpEvent123", alice.user_id)
    wrong_sender = forward(mine, post, carol.user_id)
    unseen = forward(private, secret, alice.user_id)
    elsewhere = forward(real, genuine, pete.user_id)  # no local room or sender: not checkable
    sent = [genuine, made_up, wrong_sender, unseen, elsewhere]
    wait_until(lambda: set(sent) <= set(feed_ids(alice)), timeout=60)

    marker = "org.laiwang.forward.verified"
    served = {c["event_id"]: c for c in feed(alice)}
    assert marker not in served[genuine].get("unsigned", {})
    for event_id in sent[1:]:
        assert served[event_id]["unsigned"].get(marker) is False, event_id
        assert alice.event(real, event_id)["unsigned"].get(marker) is False
    assert marker not in alice.event(real, genuine).get("unsigned", {})
    # Local posts and local forwards carry no marker.
    assert marker not in served[post].get("unsigned", {})
    # Nothing else changed for alice.
    assert joined_rooms(alice) == rooms_before and alice.invited_rooms() == invites_before
    assert set(feed_ids(alice)) == {post, *sent}


def _now() -> int:
    return int(time.time() * 1000)
