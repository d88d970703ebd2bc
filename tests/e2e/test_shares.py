"""Timelines on real homeservers: creation, membership following acquaintances (also across
servers), the posting rules, share validation and forwarding."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from tests.harness.client import MatrixClient, MatrixError, wait_until
from tests.harness.servers import execute
from tests.harness.social import make_acquainted

MUSIC: dict[str, Any] = {
    "msgtype": "org.laiwang.share.music",
    "body": "[Music] Blue Moon - Billie Holiday https://music.example/blue-moon",
    "org.laiwang.share.music": {
        "title": "Blue Moon",
        "artist": "Billie Holiday",
        "duration_ms": 185000,
        "url": "https://music.example/blue-moon",
    },
}


def timeline(user: MatrixClient) -> str:
    return str(user.laiwang("GET", "/timeline")["room_id"])


def error(call) -> MatrixError:
    with pytest.raises(MatrixError) as e:
        call()
    return e.value


def answer(e: MatrixError) -> tuple[int, str | None]:
    return e.status, e.errcode


def thread_reply(root: str, text: str) -> dict:
    return {
        "msgtype": "m.text",
        "body": text,
        "m.relates_to": {"rel_type": "m.thread", "event_id": root},
    }


def reaction(target: str, key: str = "👍") -> dict:
    return {"m.relates_to": {"rel_type": "m.annotation", "event_id": target, "key": key}}


def test_timeline_created_once_with_acquaintances_in_it(hs1):
    alice, bob, carol = hs1.new_user("alice"), hs1.new_user("bob"), hs1.new_user("carol")
    make_acquainted(alice, bob)  # before alice's timeline exists
    # Concurrent first calls give one room.
    with ThreadPoolExecutor(4) as pool:
        rooms = set(pool.map(lambda _: timeline(alice), range(4)))
    assert len(rooms) == 1
    room = rooms.pop()
    assert timeline(alice) == room
    assert alice.state(room, "org.laiwang.timeline") == {"owner": alice.user_id}
    assert alice.state(room, "m.room.join_rules")["join_rule"] == "invite"
    # The acquaintance who was there before is joined by the server.
    wait_until(lambda: bob.membership(room, bob.user_id) == "join")
    # A new acquaintance joins too; a stranger is not there.
    make_acquainted(carol, alice)
    wait_until(lambda: carol.membership(room, carol.user_id) == "join")
    assert alice.joined_members(room) == {alice.user_id, bob.user_id, carol.user_id}
    # Each side's own timeline follows too: alice is in carol's.
    carols = timeline(carol)
    wait_until(lambda: alice.membership(carols, alice.user_id) == "join")
    # The acquaintance ends: they leave each other's timelines.
    bob.laiwang("DELETE", f"/contacts/{alice.user_id}")
    wait_until(lambda: alice.membership(room, bob.user_id) == "leave")
    assert alice.joined_members(room) == {alice.user_id, carol.user_id}


def test_posting_rules_and_share_validation(hs1):
    alice, bob = hs1.new_user("alice"), hs1.new_user("bob")
    make_acquainted(alice, bob)
    room = timeline(alice)
    wait_until(lambda: bob.membership(room, bob.user_id) == "join")

    post = alice.send(room, MUSIC)
    assert alice.event(room, post)["content"]["org.laiwang.share.music"]["title"] == "Blue Moon"
    # A member may react and comment in a thread, but not post at the top level.
    bob.send(room, reaction(post), "m.reaction")
    bob.send(room, thread_reply(post, "lovely"))
    e = error(lambda: bob.send_text(room, "my own post"))
    assert (e.status, e.errcode) == (403, "M_FORBIDDEN")
    assert "react" in e.body["error"] and alice.user_id in e.body["error"]
    # Nor a reply outside a thread, nor another event type.
    e = error(
        lambda: bob.send(
            room,
            {
                "msgtype": "m.text",
                "body": "x",
                "m.relates_to": {"m.in_reply_to": {"event_id": post}},
            },
        )
    )
    assert (e.status, e.errcode) == (403, "M_FORBIDDEN")
    e = error(lambda: bob.send(room, {"body": "x"}, "org.example.custom"))
    assert (e.status, e.errcode) == (403, "M_FORBIDDEN")
    # Nor change the room's state (power levels).
    e = error(lambda: bob.put_state(room, "m.room.topic", {"topic": "mine"}))
    assert (e.status, e.errcode) == (403, "M_FORBIDDEN")

    # Malformed shares are refused, for the owner too, in any room.
    for bad, errcode in (
        (
            {**MUSIC, "org.laiwang.share.music": {"title": "x", "url": "https://m.example/x"}},
            "M_MISSING_PARAM",
        ),
        (
            {
                **MUSIC,
                "org.laiwang.share.music": {**MUSIC["org.laiwang.share.music"], "url": "ftp://x"},
            },
            "M_INVALID_PARAM",
        ),
        ({**MUSIC, "body": ""}, "M_INVALID_PARAM"),
        (
            {"msgtype": "org.laiwang.share.item", "body": "[Shop] x", "org.laiwang.share.item": {}},
            "M_MISSING_PARAM",
        ),
    ):
        e = error(lambda bad=bad: alice.send(room, bad))
        # Synapse answers every event-check refusal with 403; the errcode says what was wrong.
        assert (e.status, e.errcode) == (403, errcode), e.body
        assert "Malformed share" in e.body["error"]
    other = alice.create_room(preset="private_chat")
    e = error(lambda: alice.send(other, {**MUSIC, "org.laiwang.share.music": "Blue Moon"}))
    assert (e.status, e.errcode) == (403, "M_INVALID_PARAM"), e.body
    # A well-formed item share passes.
    alice.send(
        room,
        {
            "msgtype": "org.laiwang.share.item",
            "body": "[Shop] Tea CNY 99.00 https://shop.example/tea",
            "org.laiwang.share.item": {
                "item_id": "tea",
                "shop_id": "s1",
                "shop_name": "Tea House",
                "title": "Tea",
                "price": {"amount": 9900, "currency": "CNY"},
                "url": "https://shop.example/tea",
                "bought": False,
            },
            "com.beeper.linkpreviews": [
                {"matched_url": "https://shop.example/tea", "og:title": "Tea"}
            ],
        },
    )


def test_remote_acquaintance_sees_reacts_and_comments_stranger_cannot(hs1, hs2):
    alice = hs1.new_user("alice")
    dave, eve = hs2.new_user("dave"), hs2.new_user("eve")
    make_acquainted(alice, dave)
    room = timeline(alice)
    # dave's server accepts the invite for him.
    wait_until(lambda: alice.membership(room, dave.user_id) == "join", timeout=90)
    post = alice.send(room, MUSIC)

    # dave sees the post in his feed (on hs2), reacts and comments.
    def in_daves_feed():
        return [c for c in dave.laiwang("GET", "/feed")["chunk"] if c["event_id"] == post]

    seen = wait_until(in_daves_feed, timeout=60)[0]
    assert seen["content"]["org.laiwang.share.music"]["artist"] == "Billie Holiday"
    dave.send(room, reaction(post, "❤️"), "m.reaction")
    dave.send(room, thread_reply(post, "from hs2"))

    # Both servers count them.
    def counts(user):
        item = [c for c in user.laiwang("GET", "/feed")["chunk"] if c["event_id"] == post]
        return item and (item[0]["reactions"], item[0]["comments"]) == (1, 1)

    wait_until(lambda: counts(alice), timeout=60)
    wait_until(lambda: counts(dave), timeout=60)
    # dave's own server refuses his top-level post in alice's timeline.
    assert answer(error(lambda: dave.send_text(room, "hijack"))) == (403, "M_FORBIDDEN")

    # A stranger on hs2 sees nothing and cannot forward it.
    e = error(lambda: eve.event(room, post))
    assert (e.status, e.errcode) == (404, "M_NOT_FOUND")
    assert all(c["event_id"] != post for c in eve.laiwang("GET", "/feed")["chunk"])
    e = error(lambda: eve.laiwang("POST", "/shares/forward", {"room_id": room, "event_id": post}))
    assert (e.status, e.errcode) == (404, "M_NOT_FOUND")

    # dave forwards it into his own timeline, with attribution; alice (hs1) is in dave's.
    fwd = dave.laiwang(
        "POST", "/shares/forward", {"room_id": room, "event_id": post, "comment": "listen"}
    )["event_id"]
    daves = timeline(dave)
    content = dave.event(daves, fwd)["content"]
    assert content["org.laiwang.forward"]["sender"] == alice.user_id
    assert content["org.laiwang.forward"]["event_id"] == post
    assert content["org.laiwang.share.music"] == MUSIC["org.laiwang.share.music"]
    assert content["body"].startswith("listen\nForwarded from " + alice.user_id)
    wait_until(lambda: alice.membership(daves, alice.user_id) == "join", timeout=90)
    # hs1 joined dave's timeline after the forward: it indexed the earlier posts on joining.
    wait_until(
        lambda: any(c["event_id"] == fwd for c in alice.laiwang("GET", "/feed")["chunk"]),
        timeout=60,
    )
    # hs1 verified dave's forward of alice's post (a local sender): no "unverified" marker.
    assert "org.laiwang.forward.verified" not in alice.event(daves, fwd).get("unsigned", {})
    later = dave.send_text(daves, "after you joined")
    wait_until(
        lambda: alice.laiwang("GET", "/feed", params={"limit": 1})["chunk"][0]["event_id"] == later,
        timeout=60,
    )

    # The acquaintance ends: each leaves the other's timeline, and the feeds follow.
    dave.laiwang("DELETE", f"/contacts/{alice.user_id}")
    wait_until(lambda: alice.membership(room, dave.user_id) == "leave", timeout=90)
    wait_until(lambda: dave.membership(daves, alice.user_id) == "leave", timeout=90)
    assert all(c["event_id"] != post for c in dave.laiwang("GET", "/feed")["chunk"])


def test_forward_rules_and_bad_input(hs1):
    alice, bob, mallory = hs1.new_user("alice"), hs1.new_user("bob"), hs1.new_user("mallory")
    make_acquainted(alice, bob)
    room = timeline(alice)
    wait_until(lambda: bob.membership(room, bob.user_id) == "join")
    post = alice.send_text(room, "hello friends")

    fwd = bob.laiwang("POST", "/shares/forward", {"room_id": room, "event_id": post})["event_id"]
    content = bob.event(timeline(bob), fwd)["content"]
    assert content["msgtype"] == "m.text"
    assert content["org.laiwang.forward"] == {
        "room_id": room,
        "event_id": post,
        "sender": alice.user_id,
    }
    assert content["body"] == f"Forwarded from {alice.user_id}: hello friends"

    # A raw forward (any client) must be of something the sender sees, with its real sender.
    block = {"room_id": room, "event_id": post, "sender": alice.user_id}
    raw = {"msgtype": "m.text", "body": "fwd", "org.laiwang.forward": block}
    bob.send(timeline(bob), raw)
    forged = {**raw, "org.laiwang.forward": {**block, "sender": mallory.user_id}}
    assert answer(error(lambda: bob.send(timeline(bob), forged))) == (403, "M_FORBIDDEN")
    assert answer(error(lambda: mallory.send(timeline(mallory), raw))) == (403, "M_FORBIDDEN")
    # A stranger cannot forward it (and learns nothing: 404).
    e = error(
        lambda: mallory.laiwang("POST", "/shares/forward", {"room_id": room, "event_id": post})
    )
    assert (e.status, e.errcode) == (404, "M_NOT_FOUND")
    # Only messages: a reaction or state cannot be forwarded.
    react = bob.send(room, reaction(post), "m.reaction")
    e = error(lambda: bob.laiwang("POST", "/shares/forward", {"room_id": room, "event_id": react}))
    assert (e.status, e.errcode) == (400, "M_INVALID_PARAM")
    # Bad input.
    for body, code in (
        ({}, "M_MISSING_PARAM"),
        ({"room_id": room}, "M_MISSING_PARAM"),
        ({"room_id": "nope", "event_id": post}, "M_INVALID_PARAM"),
        ({"room_id": room, "event_id": "nope"}, "M_INVALID_PARAM"),
        ({"room_id": room, "event_id": post, "comment": 5}, "M_INVALID_PARAM"),
        ({"room_id": room, "event_id": post, "extra": 1}, "M_INVALID_PARAM"),
    ):
        e = error(lambda body=body: bob.laiwang("POST", "/shares/forward", body))
        assert (e.status, e.errcode) == (400, code), (body, e.body)
    r = bob.laiwang_raw("POST", "/shares/forward", data=b"{not json")
    assert (r.status_code, r.json()["errcode"]) == (400, "M_NOT_JSON")
    e = error(
        lambda: bob.laiwang("POST", "/shares/forward", {"room_id": room, "event_id": "$nope"})
    )
    assert answer(e) == (404, "M_NOT_FOUND")
    r = hs1.anonymous().laiwang_raw("GET", "/timeline")
    assert (r.status_code, r.json()["errcode"]) == (401, "M_MISSING_TOKEN")


def test_card_endpoints_without_a_commerce_service(pg_homeserver):
    """pg_homeserver has no `commerce` block: valid card requests get 404 and change nothing;
    bad ones still get 400 first. (The commerce side itself: test_commerce.py.)"""
    alice = pg_homeserver.new_user("alice")
    room = timeline(alice)
    for endpoint, body in (
        ("/shares/item", {"room_id": room, "item_id": "item1"}),
        ("/shares/music", {"room_id": room, "track_id": "track1"}),
    ):
        e = error(lambda endpoint=endpoint, body=body: alice.laiwang("POST", endpoint, body))
        assert (e.status, e.errcode) == (404, "M_NOT_FOUND")
        assert "commerce" in e.body["error"]
    for body in (
        {"room_id": room},
        {"room_id": room, "url": "x"},
        {"room_id": room, "url": "https://a.b", "item_id": "1"},
    ):
        e = error(lambda body=body: alice.laiwang("POST", "/shares/item", body))
        assert (e.status, e.errcode) == (400, "M_INVALID_PARAM"), e.body
    e = error(lambda: alice.laiwang("GET", "/commerce/link"))
    assert (e.status, e.errcode) == (404, "M_NOT_FOUND")
    assert not [m for m in alice.messages(room) if m["type"] == "m.room.message"]


@pytest.mark.postgres
def test_timeline_with_a_worker_happens_once(worker_homeserver):
    main, worker = worker_homeserver
    alice, bob = main.new_user("alice"), main.new_user("bob")
    alice_w = MatrixClient(worker.base_url, alice.user_id, alice.access_token)
    bob_w = MatrixClient(worker.base_url, bob.user_id, bob.access_token)
    make_acquainted(alice, bob)
    # First calls on both processes at once: one timeline.
    with ThreadPoolExecutor(4) as pool:
        rooms = set(pool.map(lambda i: timeline(alice_w if i % 2 else alice), range(4)))
    assert len(rooms) == 1
    room = rooms.pop()
    wait_until(lambda: bob.membership(room, bob.user_id) == "join")
    # bob was invited and joined exactly once, whichever process acted.
    members = [
        e["content"]["membership"]
        for e in alice.messages(room, limit=100)
        if e["type"] == "m.room.member" and e["state_key"] == bob.user_id
    ]
    assert sorted(members) == ["invite", "join"]
    # The rules hold on the worker; the feed indexes a post once, whichever process serves it.
    assert answer(error(lambda: bob_w.send_text(room, "top level"))) == (403, "M_FORBIDDEN")
    post = alice_w.send_text(room, "via the worker")
    bob_w.send(room, reaction(post), "m.reaction")
    bob.send(room, thread_reply(post, "via main"))

    def counted(user: MatrixClient) -> bool:
        chunk = user.laiwang("GET", "/feed")["chunk"]
        return [(c["event_id"], c["reactions"], c["comments"]) for c in chunk] == [(post, 1, 1)]

    wait_until(lambda: counted(bob) and counted(bob_w) and counted(alice_w))


def test_a_server_without_the_module_is_held_to_the_rules(hs1, attacker):
    """A member on a plain Synapse (no module) can send anything; the owner's server refuses
    (soft-fails) what breaks the rules, so it never reaches clients or the feed."""
    alice, pete = hs1.new_user("alice"), attacker.new_user("pete")
    contact = alice.laiwang("POST", "/contacts/requests", {"user_id": pete.user_id})
    wait_until(lambda: contact["room_id"] in pete.invited_rooms(), timeout=60)
    pete.join_invited(contact["room_id"], via=[hs1.server_name])
    wait_until(
        lambda: (
            pete.user_id in {c["user_id"] for c in alice.laiwang("GET", "/contacts")["contacts"]}
        ),
        timeout=60,
    )
    room = timeline(alice)
    # No module there to accept: pete joins by hand, as with any client.
    wait_until(lambda: room in pete.invited_rooms(), timeout=60)
    pete.join_invited(room, via=[hs1.server_name])
    wait_until(lambda: alice.membership(room, pete.user_id) == "join", timeout=60)
    post = alice.send_text(room, "hello")
    wait_until(lambda: pete.event(room, post), timeout=60)

    top_level = pete.send_text(room, "a post in alice's timeline")
    malformed = pete.send(
        room,
        {
            **MUSIC,
            "org.laiwang.share.music": {"title": "no artist", "url": "https://m.example/x"},
            "m.relates_to": {"rel_type": "m.thread", "event_id": post},
        },
    )
    pete.send(room, thread_reply(post, "a fine comment"))

    def comments() -> int:
        chunk = alice.laiwang("GET", "/feed")["chunk"]
        return [c["comments"] for c in chunk if c["event_id"] == post] == [1]

    # The comment came after the others, so hs1 has had all three in hand.
    wait_until(comments, timeout=60)
    for refused in (top_level, malformed):
        e = error(lambda refused=refused: alice.event(room, refused))
        assert (e.status, e.errcode) == (404, "M_NOT_FOUND")
    assert [c["event_id"] for c in alice.laiwang("GET", "/feed")["chunk"]] == [post]


def test_get_timeline_repairs_an_acquaintance_who_never_got_a_membership(hs1):
    """The backstop for a membership change lost with a restarted process: an acquaintance of
    long standing who has no membership at all is added when the owner opens the timeline."""
    alice, bob, carol = hs1.new_user("alice"), hs1.new_user("bob"), hs1.new_user("carol")
    room = timeline(alice)
    # The index learns of alice & bob an hour ago, but no listener ran (as after a crash).
    hour_ago = int(time.time() * 1000) - 3600 * 1000
    for a, b in ((alice.user_id, bob.user_id), (bob.user_id, alice.user_id)):
        execute(
            hs1,
            "INSERT INTO laiwang_acquaintances (user_id, other_id, room_id, source, since_ts)"
            " VALUES (?, ?, ?, 'request', ?)",
            a,
            b,
            "!lost:example.org",
            hour_ago,
        )
    assert bob.user_id not in alice.joined_members(room)
    timeline(alice)  # opening it repairs in the background
    wait_until(lambda: bob.user_id in alice.joined_members(room))
    # A recent acquaintance is left to the listener, and strangers are never added.
    make_acquainted(alice, carol)
    wait_until(lambda: carol.user_id in alice.joined_members(room))
    assert alice.joined_members(room) == {alice.user_id, bob.user_id, carol.user_id}
