"""What a plain Matrix client's `/sync` shows of Laiwang's rooms: room types in `m.room.create`,
the user's Laiwang space listing their timelines and shops, and `m.lowpriority` on the timelines
the module joined them to (also across servers); contact rooms stay plain chats."""

from __future__ import annotations

import json
import uuid
from typing import Any
from urllib.parse import quote

from tests.e2e.test_commerce import _shop_room
from tests.harness.client import MatrixClient, wait_until
from tests.harness.servers import execute
from tests.harness.social import make_acquainted

TIMELINE_TYPE = "org.laiwang.timeline"


class Synced:
    """One full `/sync` of a user, as a client starting afresh sees it."""

    def __init__(self, user: MatrixClient):
        # A fresh filter each time: Synapse caches identical initial syncs for a while.
        no_cache = json.dumps({"account_data": {"not_types": [uuid.uuid4().hex]}})
        body = user.call("GET", "/_matrix/client/v3/sync", params={"filter": no_cache})
        self.joined: dict[str, Any] = body.get("rooms", {}).get("join", {})

    def state(self, room_id: str) -> dict[tuple[str, str], dict[str, Any]]:
        room = self.joined[room_id]
        events = room.get("state", {}).get("events", []) + room.get("timeline", {}).get(
            "events", []
        )
        return {(e["type"], e["state_key"]): e["content"] for e in events if "state_key" in e}

    def room_type(self, room_id: str) -> str | None:
        return self.state(room_id)[("m.room.create", "")].get("type")

    def tags(self, room_id: str) -> dict[str, Any]:
        for event in self.joined[room_id].get("account_data", {}).get("events", []):
            if event["type"] == "m.tag":
                return dict(event["content"].get("tags", {}))
        return {}

    def spaces(self) -> list[str]:
        return [r for r in self.joined if self.room_type(r) == "m.space"]

    def children(self, space_id: str) -> dict[str, dict[str, Any]]:
        """The space's listed rooms (an emptied `m.space.child` lists nothing)."""
        return {
            key: content
            for (event_type, key), content in self.state(space_id).items()
            if event_type == "m.space.child" and content.get("via")
        }


def timeline(user: MatrixClient) -> str:
    return str(user.laiwang("GET", "/timeline")["room_id"])


def test_a_plain_clients_sync_before_and_after(hs1, hs2):
    alice, bob = hs1.new_user("alice"), hs1.new_user("bob")
    contact_room = make_acquainted(alice, bob)

    # Before: acquainted, no timeline yet. The contact room is a plain chat; no space.
    before = Synced(alice)
    assert set(before.joined) == {contact_room}
    assert before.room_type(contact_room) is None
    assert before.tags(contact_room) == {}

    bobs = timeline(bob)  # the module joins alice to it
    wait_until(lambda: alice.membership(bobs, alice.user_id) == "join", timeout=30)
    own = timeline(alice)
    shop = _shop_room(hs1, "teahouse")
    alice.laiwang("PUT", "/commerce/subscriptions/teahouse")

    def listed() -> Synced | None:
        synced = Synced(alice)
        spaces = synced.spaces()
        if len(spaces) == 1 and set(synced.children(spaces[0])) == {bobs, own, shop}:
            return synced
        return None

    after = wait_until(listed, timeout=30)
    (space,) = after.spaces()
    # Room types: what each room is, fixed at creation; contact rooms stay untyped chats.
    assert after.room_type(bobs) == after.room_type(own) == TIMELINE_TYPE
    assert after.room_type(contact_room) is None
    # The space, in alice's name and hers alone; its children with `via`.
    assert after.state(space)[("m.room.name", "")]["name"] == "Laiwang"
    assert alice.joined_members(space) == {alice.user_id}
    children = after.children(space)
    assert children[bobs]["via"] == [hs1.server_name]
    assert children[own]["order"] < children[bobs]["order"] < children[shop]["order"]
    assert contact_room not in children
    # Low priority: the timeline the module joined her to; not her own, the shop or the chat.
    assert after.tags(bobs) == {"m.lowpriority": {}}
    assert after.tags(own) == after.tags(shop) == after.tags(contact_room) == {}
    assert after.tags(space) == {}

    # Leaving a timeline takes it out of the space; the tag is hers to keep or drop.
    alice.leave(bobs)
    wait_until(lambda: set(Synced(alice).children(space)) == {own, shop}, timeout=30)
    alice.laiwang("DELETE", "/commerce/subscriptions/teahouse")
    wait_until(lambda: set(Synced(alice).children(space)) == {own}, timeout=30)
    # Each change sent once: three rooms listed, two taken out.
    assert len([e for e in alice.messages(space, 100) if e["type"] == "m.space.child"]) == 5

    # Across servers: dave (hs2) is joined to bob's timeline by his own server's module.
    dave = hs2.new_user("dave")
    make_acquainted(bob, dave)
    wait_until(lambda: bobs in Synced(dave).joined, timeout=60)

    def daves() -> Synced | None:
        synced = Synced(dave)
        spaces = synced.spaces()
        return synced if spaces and bobs in synced.children(spaces[0]) else None

    synced = wait_until(daves, timeout=60)
    assert synced.room_type(bobs) == TIMELINE_TYPE
    assert synced.tags(bobs) == {"m.lowpriority": {}}
    assert synced.children(synced.spaces()[0])[bobs]["via"] == [hs1.server_name]


def test_a_user_from_before_spaces_gets_a_complete_space(hs1):
    """On an upgraded server a user has timelines, shops and no space: their next
    `GET /timeline` makes it, listing everything they already have."""
    alice, bob = hs1.new_user("alice"), hs1.new_user("bob")
    make_acquainted(alice, bob)
    bobs, own = timeline(bob), timeline(alice)
    shop = _shop_room(hs1, "teahouse")
    alice.laiwang("PUT", "/commerce/subscriptions/teahouse")
    wait_until(lambda: alice.membership(bobs, alice.user_id) == "join", timeout=30)
    (old,) = wait_until(lambda: Synced(alice).spaces(), timeout=30)
    # Back to before spaces: no space recorded or joined, no tag.
    wait_until(lambda: len(Synced(alice).children(old)) == 3, timeout=30)
    alice.leave(old)
    alice.call(
        "DELETE",
        f"/_matrix/client/v3/user/{quote(alice.user_id)}/rooms/{quote(bobs)}/tags/m.lowpriority",
    )
    execute(hs1, "DELETE FROM laiwang_spaces WHERE user_id = ?", alice.user_id)
    execute(hs1, "DELETE FROM laiwang_space_children WHERE user_id = ?", alice.user_id)
    assert Synced(alice).spaces() == []

    assert timeline(alice) == own

    def complete() -> Synced | None:
        synced = Synced(alice)
        spaces = synced.spaces()
        if spaces and set(synced.children(spaces[0])) == {own, bobs, shop}:
            return synced
        return None

    synced = wait_until(complete, timeout=30)
    assert synced.spaces() != [old]
    assert synced.tags(bobs) == {"m.lowpriority": {}}
    assert synced.tags(own) == synced.tags(shop) == {}


def test_clusters_are_typed_and_stay_in_the_chat_list(hs1):
    alice = hs1.new_user("alice")
    room = alice.laiwang("POST", "/clusters", {"topic": "Board games"})["room_id"]
    synced = Synced(alice)
    assert synced.room_type(room) == "org.laiwang.cluster"
    assert synced.tags(room) == {}
    assert synced.spaces() == []
