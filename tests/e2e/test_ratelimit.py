"""What the module sends in a user's name counts against that user's Synapse rate limits
(`rc_message`), shared with the user's own /send, and a shadow-banned user's sends reach no one.
On a dedicated homeserver with strict limits: the shared ones run with relaxed limits."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from tests.e2e.test_aa import aa_events, ask, path, stays
from tests.harness.client import MatrixClient, MatrixError, wait_until
from tests.harness.servers import TestHomeserver, start_all
from tests.harness.social import make_acquainted

BURST = 4  # rc_message burst; one goes to creating the room
STRICT = {"rc_message": {"per_second": 0.02, "burst_count": BURST}}


@pytest.fixture(scope="module")
def strict(test_root: Path) -> Iterator[TestHomeserver]:
    server = TestHomeserver(test_root / "hs-strict", extra=STRICT)
    start_all([server])
    yield server
    server.stop()


def pair(hs: TestHomeserver) -> tuple[str, MatrixClient, MatrixClient]:
    """A public room where alice (creator, one message spent) and bob are joined."""
    alice, bob = hs.new_user("alice"), hs.new_user("bob")
    room = alice.create_room(preset="public_chat")
    bob.join(room)
    return room, alice, bob


def limited(call: Any) -> MatrixError:
    with pytest.raises(MatrixError) as info:
        call()
    e = info.value
    assert (e.status, e.errcode) == (429, "M_LIMIT_EXCEEDED"), e.body
    assert isinstance(e.body.get("retry_after_ms"), int) and e.body["retry_after_ms"] > 0
    return e


def test_a_flood_of_aa_requests_stops_at_the_burst(strict: TestHomeserver) -> None:
    room, alice, bob = pair(strict)
    sent, refused = [], 0
    for _ in range(10):
        try:
            sent.append(ask(alice, room, [alice.user_id, bob.user_id])["event_id"])
        except MatrixError as e:
            assert (e.status, e.errcode) == (429, "M_LIMIT_EXCEEDED"), e.body
            assert e.body["retry_after_ms"] > 0
            refused += 1
    assert 1 <= len(sent) <= BURST - 1 and refused == 10 - len(sent)
    # Nothing beyond the burst reached the room.
    assert sorted(e["event_id"] for e in aa_events(bob, room)) == sorted(sent)


def test_reminders_closes_and_pays_count_too(strict: TestHomeserver) -> None:
    room, alice, bob = pair(strict)
    request = ask(alice, room, [alice.user_id, bob.user_id])["event_id"]
    alice.send_text(room, "one")
    alice.send_text(room, "two")  # the burst is spent: room, request, two messages
    limited(lambda: alice.laiwang("POST", path(room, request, "remind"), {}))
    limited(lambda: alice.laiwang("POST", path(room, request, "close"), {}))
    cash = {"method": "cash", "payer": bob.user_id}
    limited(lambda: alice.laiwang("POST", path(room, request, "pay"), cash))
    assert [e["event_id"] for e in aa_events(bob, room)] == [request]


def test_own_sends_and_module_sends_share_one_budget(strict: TestHomeserver) -> None:
    # /send first, then the module: the AA request is refused.
    room, alice, bob = pair(strict)
    for i in range(BURST - 1):
        alice.send_text(room, f"m{i}")
    limited(lambda: ask(alice, room, [alice.user_id, bob.user_id]))
    assert aa_events(bob, room) == []
    # The module first, then /send: the message is refused.
    room, carol, dave = pair(strict)
    for _ in range(BURST - 1):
        ask(carol, room, [carol.user_id, dave.user_id])
    limited(lambda: carol.send_text(room, "one too many"))


def test_a_flood_of_forwards_stops_at_the_burst(strict: TestHomeserver) -> None:
    room, alice, bob = pair(strict)
    post = bob.send_text(room, "look")
    timeline = str(alice.laiwang("GET", "/timeline")["room_id"])  # a room of its own
    sent, refused = [], 0
    for _ in range(6):
        try:
            sent.append(
                alice.laiwang("POST", "/shares/forward", {"room_id": room, "event_id": post})
            )
        except MatrixError as e:
            assert (e.status, e.errcode) == (429, "M_LIMIT_EXCEEDED"), e.body
            refused += 1
    assert refused >= 1 and len(sent) + refused == 6
    # Nothing beyond the burst reached her timeline.
    forwards = [e for e in alice.messages(timeline) if "org.laiwang.forward" in e["content"]]
    assert sorted(e["event_id"] for e in forwards) == sorted(f["event_id"] for f in sent)


def shadow_ban(hs: TestHomeserver, user: MatrixClient) -> None:
    """Shadow-ban the user, and lift their rate limit (Synapse's `ratelimit_override`, which the
    module honours as Synapse does) so that only the ban is tested."""
    admin = hs.new_user("admin", admin=True)
    users = f"/_synapse/admin/v1/users/{quote(user.user_id)}"
    admin.call("POST", f"{users}/shadow_ban", {})
    admin.call("POST", f"{users}/override_ratelimit", {"messages_per_second": 0, "burst_count": 0})


def test_a_shadow_banned_users_aa_calls_reach_no_one(strict: TestHomeserver) -> None:
    room, alice, bob = pair(strict)
    real = ask(alice, room, [alice.user_id, bob.user_id])["event_id"]  # before the ban
    shadow_ban(strict, alice)
    fake = ask(alice, room, [alice.user_id, bob.user_id])
    assert fake["event_id"].startswith("$") and set(fake["shares"]) == {alice.user_id, bob.user_id}
    cash = {"method": "cash", "payer": bob.user_id}
    paid = alice.laiwang("POST", path(room, real, "pay"), cash)
    assert paid["event_id"].startswith("$") and paid["amount"] == 5000
    closed = alice.laiwang("POST", path(room, real, "close"), {})
    assert closed["event_id"].startswith("$")
    # Nothing reached bob: no new request, payment or close; his share is still unpaid.
    assert [e["event_id"] for e in aa_events(bob, room)] == [real]
    for event_id in (fake["event_id"], paid["event_id"], closed["event_id"]):
        with pytest.raises(MatrixError) as info:
            bob.event(room, event_id)
        assert (info.value.status, info.value.errcode) == (404, "M_NOT_FOUND"), info.value.body
    view = bob.laiwang("GET", path(room, real))
    assert view["state"] == "open" and view["shares"][bob.user_id]["paid"] is False, view


def test_a_shadow_banned_users_forward_reaches_no_one(strict: TestHomeserver) -> None:
    room, alice, bob = pair(strict)
    post = bob.send_text(room, "look")
    timeline = str(alice.laiwang("GET", "/timeline")["room_id"])
    shadow_ban(strict, alice)
    forwarded = alice.laiwang("POST", "/shares/forward", {"room_id": room, "event_id": post})
    assert forwarded["event_id"].startswith("$")
    with pytest.raises(MatrixError) as info:
        alice.event(timeline, forwarded["event_id"])
    assert (info.value.status, info.value.errcode) == (404, "M_NOT_FOUND"), info.value.body


def contacts(user: MatrixClient) -> set[str]:
    return {c["user_id"] for c in user.laiwang("GET", "/contacts")["contacts"]}


def test_a_shadow_banned_users_contact_request_reaches_no_one(strict: TestHomeserver) -> None:
    alice, bob = strict.new_user("alice"), strict.new_user("bob")
    bob.laiwang("PUT", "/settings", {"accept_requests_from": "anyone"})
    shadow_ban(strict, alice)
    room = alice.laiwang("POST", "/contacts/requests", {"user_id": bob.user_id})["room_id"]
    assert room.startswith("!")
    stays(lambda: room not in bob.invited_rooms() and not bob.invited_rooms())
    assert bob.laiwang("GET", "/contacts/requests")["incoming"] == []
    assert contacts(bob) == set()


def test_a_shadow_banned_users_cluster_invites_reach_no_one(strict: TestHomeserver) -> None:
    alice, bob, carol = (strict.new_user(n) for n in ("alice", "bob", "carol"))
    make_acquainted(alice, bob)
    shadow_ban(strict, alice)
    before = bob.invited_rooms()
    answer = alice.laiwang("POST", "/clusters", {"topic": "Hiking", "invite": [bob.user_id]})
    assert answer["room_id"].startswith("!") and "invite_failures" not in answer
    stays(lambda: bob.invited_rooms() == before)
    # A control: carol, not banned, reaches bob the same way.
    make_acquainted(carol, bob)
    room = carol.laiwang("POST", "/clusters", {"topic": "Chess", "invite": [bob.user_id]})[
        "room_id"
    ]
    wait_until(lambda: room in bob.invited_rooms())


def test_a_flood_of_contact_requests_meets_synapses_limits(strict: TestHomeserver) -> None:
    # Each request makes a room in the requester's name (rc_message, rc_room_creation) and
    # invites (rc_invites): Synapse's own limiters, through ModuleApi, answer the 429.
    alice = strict.new_user("alice")
    targets = [strict.new_user("t") for _ in range(BURST + 2)]
    asked, refused = [], []
    for t in targets:
        t.laiwang("PUT", "/settings", {"accept_requests_from": "anyone"})
        try:
            alice.laiwang("POST", "/contacts/requests", {"user_id": t.user_id})
            asked.append(t)
        except MatrixError as e:
            assert (e.status, e.errcode) == (429, "M_LIMIT_EXCEEDED"), e.body
            assert e.body["retry_after_ms"] > 0
            refused.append(t)
    assert 1 <= len(asked) <= BURST and refused
    for t in asked:
        wait_until(t.invited_rooms)
    # Nothing reached those who were refused.
    assert all(not t.invited_rooms() for t in refused)
