"""GET /feed on a real homeserver: order, stable pagination, counts, redactions, who sees what,
and bad input. (The cross-server feed is in test_shares.py.)"""

from __future__ import annotations

import uuid
from urllib.parse import quote

import pytest

from tests.harness.client import MatrixClient, MatrixError, wait_until
from tests.harness.social import make_acquainted


def timeline(user: MatrixClient) -> str:
    return str(user.laiwang("GET", "/timeline")["room_id"])


def feed(user: MatrixClient, **params) -> dict:
    return user.laiwang("GET", "/feed", params=params or None)


def feed_ids(user: MatrixClient) -> list[str]:
    return [c["event_id"] for c in feed(user, limit=100)["chunk"]]


def redact(user: MatrixClient, room: str, event_id: str) -> None:
    path = f"/_matrix/client/v3/rooms/{quote(room)}/redact/{quote(event_id)}/{uuid.uuid4().hex}"
    user.call("PUT", path, {})


def test_feed_order_pagination_counts_and_scope(hs1):
    alice, bob, carol = hs1.new_user("alice"), hs1.new_user("bob"), hs1.new_user("carol")
    mallory = hs1.new_user("mallory")
    make_acquainted(alice, bob)
    make_acquainted(carol, alice)
    rooms = {u.user_id: timeline(u) for u in (alice, bob, carol, mallory)}
    wait_until(lambda: alice.membership(rooms[bob.user_id], alice.user_id) == "join")
    wait_until(lambda: alice.membership(rooms[carol.user_id], alice.user_id) == "join")
    wait_until(lambda: bob.membership(rooms[alice.user_id], bob.user_id) == "join")
    wait_until(lambda: carol.membership(rooms[alice.user_id], carol.user_id) == "join")

    posted = []  # oldest first
    for i in range(3):
        for user in (alice, bob, carol):
            posted.append(user.send_text(rooms[user.user_id], f"{user.user_id} post {i}"))
    secret = mallory.send_text(rooms[mallory.user_id], "not for strangers")
    # Comments and reactions are not posts.
    first = posted[0]  # alice's
    bob.send(
        rooms[alice.user_id],
        {"m.relates_to": {"rel_type": "m.annotation", "event_id": first, "key": "👍"}},
        "m.reaction",
    )
    heart = carol.send(
        rooms[alice.user_id],
        {"m.relates_to": {"rel_type": "m.annotation", "event_id": first, "key": "❤️"}},
        "m.reaction",
    )
    carol.send(
        rooms[alice.user_id],
        {
            "msgtype": "m.text",
            "body": "nice",
            "m.relates_to": {"rel_type": "m.thread", "event_id": first},
        },
    )

    newest_first = list(reversed(posted))
    wait_until(lambda: feed_ids(alice) == newest_first)
    assert secret not in feed_ids(alice)
    # bob sees his and alice's posts, not carol's (not his acquaintance) nor mallory's.
    assert feed_ids(bob) == [e for e in newest_first if e in posted[0::3] or e in posted[1::3]]
    assert feed_ids(mallory) == [secret]

    item = {c["event_id"]: c for c in feed(alice, limit=100)["chunk"]}[first]
    assert (item["reactions"], item["comments"]) == (2, 1)
    assert item["content"]["body"].endswith("post 0") and item["sender"] == alice.user_id
    assert item["room_id"] == rooms[alice.user_id] and item["type"] == "m.room.message"

    # Pages of 4 walk the same list; a post made meanwhile does not shift later pages.
    page = feed(alice, limit=4)
    seen = [c["event_id"] for c in page["chunk"]]
    newer = bob.send_text(rooms[bob.user_id], "meanwhile")
    while "next_batch" in page:
        page = feed(alice, limit=4, **{"from": page["next_batch"]})
        seen += [c["event_id"] for c in page["chunk"]]
    assert seen == newest_first
    wait_until(lambda: feed_ids(alice)[0] == newer)

    # A redacted reaction no longer counts; a redacted post leaves the feed.
    redact(carol, rooms[alice.user_id], heart)
    wait_until(
        lambda: {c["event_id"]: c for c in feed(alice, limit=100)["chunk"]}[first]["reactions"] == 1
    )
    redact(alice, rooms[alice.user_id], first)
    wait_until(lambda: first not in feed_ids(alice))

    # When the acquaintance ends, their posts leave the feed.
    bob.laiwang("DELETE", f"/contacts/{alice.user_id}")
    wait_until(lambda: not set(posted[1::3]) & set(feed_ids(alice)))


def test_feed_bad_input(hs1):
    alice = hs1.new_user("alice")
    assert feed(alice) == {"chunk": []}
    for params in (
        {"limit": "0"},
        {"limit": "101"},
        {"limit": "ten"},
        {"limit": "-1"},
        {"from": "garbage"},
        {"from": "MTIzfG5vdC1hbi1ldmVudA"},  # base64 of "123|not-an-event"
    ):
        with pytest.raises(MatrixError) as e:
            feed(alice, **params)
        assert (e.value.status, e.value.errcode) == (400, "M_INVALID_PARAM"), params
    r = hs1.anonymous().laiwang_raw("GET", "/feed")
    assert (r.status_code, r.json()["errcode"]) == (401, "M_MISSING_TOKEN")
