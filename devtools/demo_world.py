"""The demo's small world, seeded once through the module's own endpoints (as clients would):

- alice, bob and carol acquainted: bob through alice's address book (numbers bound with the
  admin API, then alice's hashed lookup), carol through a contact request she accepts, and bob
  and carol through another; dave, carol's acquaintance, is on the same server (see `demo.py`);
- timeline posts: alice's text, a music card, a bought-item card (an order made, paid and
  delivered at the commerce mock for alice's linked account), bob's reaction and carol's
  comment, and a post of bob's, so alice's feed merges two timelines;
- alice subscribed to the teahouse shop;
- a cluster three people deep (alice brought bob, bob carol, carol dave);
- an AA bill in the cluster that bob paid (through the provider) and carol has not.

Every step looks before it writes (or is idempotent on the server), so a seeding interrupted
anywhere is finished by the next start; `demo.py` sets the `seeded` flag once all went through
and does not seed again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import quote

import requests

from devtools.commerce import MockProcess
from rooms.discovery import lookup_hash

T = TypeVar("T")

LAIWANG = "/_synapse/client/laiwang/v1"
CLIENT = "/_matrix/client/v3"

# Demo phone numbers (E.164 without '+'), bound with the admin API: nobody is texted.
NUMBERS = {"alice": "8613800138001", "bob": "8613800138002", "carol": "8613800138003"}
CLUSTER_TOPIC = "Weekend hiking"
BILL_TITLE = "Hotpot after the hike"
BILL_TOTAL = 36000  # CNY 360.00, three ways
POST_TEXT = "Back from West Lake: the tea was worth the climb."
BOB_POST = "Anyone up for hiking on Saturday?"
COMMENT = "Save me a cup next time!"
TRACK = "track1"
ITEM = "item1"  # the teahouse's Longjing


class SeedError(RuntimeError):
    pass


class User:
    """A logged-in demo user, with just the calls the seeding needs."""

    def __init__(self, base_url: str, login_reply: dict[str, Any]):
        self.base_url = base_url
        self.user_id = str(login_reply["user_id"])
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {login_reply['access_token']}"

    def raw(self, method: str, path: str, body: Any = None, **params: Any) -> requests.Response:
        return self.session.request(
            method, self.base_url + path, json=body, params=params or None, timeout=60
        )

    def call(self, method: str, path: str, body: Any = None, **params: Any) -> dict[str, Any]:
        r = self.raw(method, path, body, **params)
        if r.status_code >= 400:
            raise SeedError(f"{self.user_id}: {method} {path} → {r.status_code} {r.text[:300]}")
        return dict(r.json())

    def laiwang(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        return self.call(method, LAIWANG + path, body)

    def join(self, room_id: str) -> None:
        self.call("POST", f"{CLIENT}/join/{quote(room_id)}", {})

    def invite(self, room_id: str, user_id: str) -> None:
        self.call("POST", f"{CLIENT}/rooms/{quote(room_id)}/invite", {"user_id": user_id})

    def membership(self, room_id: str, user_id: str) -> str | None:
        r = self.raw("GET", f"{CLIENT}/rooms/{quote(room_id)}/state/m.room.member/{user_id}")
        return str(r.json().get("membership")) if r.status_code == 200 else None

    def messages(self, room_id: str) -> list[dict[str, Any]]:
        path = f"{CLIENT}/rooms/{quote(room_id)}/messages"
        return list(self.call("GET", path, dir="b", limit=100)["chunk"])

    def send(self, room_id: str, content: dict[str, Any], event_type: str, txn: str) -> str:
        # A fixed transaction id: a retried request is the same event (within one login; across
        # starts the seeding looks before it sends).
        path = f"{CLIENT}/rooms/{quote(room_id)}/send/{event_type}/{txn}"
        return str(self.call("PUT", path, content)["event_id"])

    def contacts(self) -> set[str]:
        return {c["user_id"] for c in self.laiwang("GET", "/contacts")["contacts"]}


def wait_for(check: Callable[[], T | None], what: str, timeout: float = 60.0) -> T:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise SeedError(f"timed out waiting for {what}")
        time.sleep(0.2)


def seed(users: dict[str, User], mock: MockProcess, log: Callable[[str], None]) -> dict[str, Any]:
    """Seed the world (every step idempotent); returns its room ids for the summary."""
    log("Seeding the demo world (once) …")
    admin = users["alice"]
    # Seeding sends more messages in a few seconds than `rc_message` allows a person: lift
    # the demo users' limits while it runs (an interrupted seeding lifts them again, then
    # restores them).
    for user in users.values():
        admin.call("POST", _override(user), {"messages_per_second": 0, "burst_count": 0})
    try:
        return _seed(users, mock, log)
    finally:
        for user in users.values():
            admin.call("DELETE", _override(user))


def _override(user: User) -> str:
    return f"/_synapse/admin/v1/users/{quote(user.user_id)}/override_ratelimit"


def _seed(users: dict[str, User], mock: MockProcess, log: Callable[[str], None]) -> dict[str, Any]:
    alice, bob, carol, dave = users["alice"], users["bob"], users["carol"], users["dave"]
    _address_book(alice, users)
    acquaint(alice, bob, None)
    for user in (carol, dave):  # they take requests from anyone; bob keeps the default
        user.laiwang("PUT", "/settings", {"accept_requests_from": "anyone"})
    acquaint(alice, carol, "Hi Carol, it's Alice from the hiking club!")
    acquaint(bob, carol, None)
    acquaint(carol, dave, "Dave! Join us on the trail?")
    log("  acquaintances: alice–bob (address book), alice–carol, bob–carol, carol–dave")

    timeline = _timeline_posts(alice, bob, carol)
    _shop(alice, mock, timeline)
    log("  alice's timeline: a post, a music card, a bought item, a reaction and a comment")
    cluster = _cluster(alice, bob, carol, dave)
    _bill(alice, bob, carol, cluster)
    log("  a cluster three people deep, with an AA bill half paid")
    return {"timeline": timeline, "cluster": cluster}


def _address_book(alice: User, users: dict[str, User]) -> None:
    for name, number in NUMBERS.items():
        alice.call(
            "PUT",
            f"/_synapse/admin/v2/users/{quote(users[name].user_id)}",
            {"threepids": [{"medium": "msisdn", "address": number}]},
        )
    pepper = str(alice.laiwang("GET", "/discovery/hash_details")["lookup_pepper"])
    body = {
        "algorithm": "sha256",
        "pepper": pepper,
        # Only bob's number: carol comes through a plain contact request.
        "addresses": [lookup_hash(NUMBERS["bob"], pepper)],
    }
    found = alice.laiwang("POST", "/discovery/lookup", body)["mappings"]
    if users["bob"].user_id not in found.values():
        raise SeedError(f"alice's lookup did not find bob: {found}")


def acquaint(requester: User, target: User, message: str | None) -> None:
    """A contact request the target accepts by joining its room (asking again returns the
    same room, joining again changes nothing)."""
    if target.user_id in requester.contacts():
        return
    body: dict[str, Any] = {"user_id": target.user_id}
    if message:
        body["message"] = message
    room_id = str(requester.laiwang("POST", "/contacts/requests", body)["room_id"])
    target.join(room_id)
    wait_for(lambda: target.user_id in requester.contacts(), "the acquaintance")
    wait_for(lambda: requester.user_id in target.contacts(), "the acquaintance")


def _find(
    events: list[dict[str, Any]], sender: str, match: Callable[[dict[str, Any]], bool]
) -> str:
    for event in events:
        if event["sender"] == sender and match(event.get("content", {})):
            return str(event["event_id"])
    return ""


def _wait_joined(user: User, room_id: str) -> None:
    wait_for(lambda: user.membership(room_id, user.user_id) == "join", "a timeline join")


def _timeline_posts(alice: User, bob: User, carol: User) -> str:
    room = str(alice.laiwang("GET", "/timeline")["room_id"])
    for member in (bob, carol):  # joined by the module in the background
        _wait_joined(member, room)
    events = alice.messages(room)
    post = _find(events, alice.user_id, lambda c: c.get("body") == POST_TEXT)
    if not post:
        post = alice.send(room, {"msgtype": "m.text", "body": POST_TEXT}, "m.room.message", "p1")
    music = _find(events, alice.user_id, lambda c: c.get("msgtype") == "org.laiwang.share.music")
    if not music:
        music = str(
            alice.laiwang("POST", "/shares/music", {"room_id": room, "track_id": TRACK})["event_id"]
        )
    reaction = {"m.relates_to": {"rel_type": "m.annotation", "event_id": music, "key": "🎵"}}
    if not _find(events, bob.user_id, lambda c: c.get("m.relates_to") == reaction["m.relates_to"]):
        bob.send(room, reaction, "m.reaction", "r1")
    comment = {
        "msgtype": "m.text",
        "body": COMMENT,
        "m.relates_to": {"rel_type": "m.thread", "event_id": post},
    }
    if not _find(events, carol.user_id, lambda c: c.get("body") == COMMENT):
        carol.send(room, comment, "m.room.message", "c1")
    bobs = str(bob.laiwang("GET", "/timeline")["room_id"])
    if not _find(bob.messages(bobs), bob.user_id, lambda c: c.get("body") == BOB_POST):
        bob.send(bobs, {"msgtype": "m.text", "body": BOB_POST}, "m.room.message", "p1")
    return room


def _shop(alice: User, mock: MockProcess, timeline: str) -> None:
    """The teahouse subscription (the bridge makes the shop's room soon after it starts), and
    the card of an item alice bought there."""

    def subscribed() -> bool:
        r = alice.raw("PUT", LAIWANG + "/commerce/subscriptions/teahouse")
        return r.status_code == 200

    wait_for(subscribed, "the teahouse's room (made by the commerce bridge)", timeout=90)
    if _find(
        alice.messages(timeline),
        alice.user_id,
        lambda c: bool(c.get("org.laiwang.share.item", {}).get("bought")),
    ):
        return
    account = alice.laiwang("GET", "/commerce/link")["account_id"]
    order = mock.client().delivered_order(str(account), ITEM)
    body = {"room_id": timeline, "item_id": ITEM, "order_id": order["order_id"]}
    alice.laiwang("POST", "/shares/item", body)


def _cluster(alice: User, bob: User, carol: User, dave: User) -> str:
    """alice brings bob, bob brings carol, carol brings dave: each invite is an acquaintance's."""
    mine = alice.laiwang("GET", "/clusters")["clusters"]
    room = next((str(c["room_id"]) for c in mine if c["topic"] == CLUSTER_TOPIC), "")
    if not room:
        room = str(alice.laiwang("POST", "/clusters", {"topic": CLUSTER_TOPIC})["room_id"])
    for inviter, invitee in ((alice, bob), (bob, carol), (carol, dave)):
        membership = invitee.membership(room, invitee.user_id)
        if membership == "join":
            continue
        if membership != "invite":
            inviter.invite(room, invitee.user_id)
        invitee.join(room)
    return room


def _bill(alice: User, bob: User, carol: User, room: str) -> None:
    request = _find(
        alice.messages(room),
        alice.user_id,
        lambda c: c.get("msgtype") == "org.laiwang.aa.request" and BILL_TITLE in str(c),
    )
    if not request:
        body = {
            "room_id": room,
            "title": BILL_TITLE,
            "currency": "CNY",
            "total": BILL_TOTAL,
            "participants": [alice.user_id, bob.user_id, carol.user_id],
        }
        request = str(alice.laiwang("POST", "/aa/requests", body)["event_id"])
    # bob pays his share through the provider (charged once, whatever the retries); carol owes.
    bob.laiwang("POST", f"/aa/requests/{quote(room)}/{quote(request)}/pay", {"method": "provider"})
