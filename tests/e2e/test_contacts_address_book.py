"""The request policy and suggestions that rest on the address book (discovery lookups)."""

from __future__ import annotations

import pytest

from tests.harness.client import MatrixError, wait_until
from tests.harness.discovery import lookup
from tests.harness.msisdn import admin_set_msisdns, new_number
from tests.harness.social import make_acquainted


def suggestions(user) -> dict[str, dict]:
    return {s["user_id"]: s for s in user.laiwang("GET", "/contacts/suggestions")["suggestions"]}


def test_address_book_lets_requests_through_and_feeds_suggestions(hs1):
    admin = hs1.new_user("admin", admin=True)
    alice, bob, carol = hs1.new_user("alice"), hs1.new_user("bob"), hs1.new_user("carol")
    numbers = {}
    for user in (alice, bob, carol):
        numbers[user.user_id] = new_number()[1]
        admin_set_msisdns(admin, user.user_id, [numbers[user.user_id]])

    # bob keeps the default accept_requests_from=address_book: alice is not in his book yet.
    with pytest.raises(MatrixError) as e:
        alice.laiwang("POST", "/contacts/requests", {"user_id": bob.user_id})
    assert e.value.status == 403

    # bob uploads his address book (a lookup) containing alice and carol.
    found = lookup(bob, [numbers[alice.user_id], numbers[carol.user_id]])
    assert set(found.values()) == {alice.user_id, carol.user_id}
    # bob's suggestions: both, from his book; alice's: bob, who has her in his book.
    assert set(suggestions(bob)) == {alice.user_id, carol.user_id}
    assert suggestions(alice)[bob.user_id]["reason"] == "has_you_in_their_address_book"

    # carol and bob share an acquaintance (dave): mutual_count says so.
    dave = hs1.new_user("dave")
    make_acquainted(dave, bob)
    make_acquainted(dave, carol)
    assert suggestions(bob)[carol.user_id]["mutual_count"] == 1
    assert suggestions(bob)[alice.user_id]["mutual_count"] == 0
    assert list(suggestions(bob))[0] == carol.user_id  # most mutual first

    # Now alice's request gets through, and acquaintances drop out of suggestions.
    room = alice.laiwang("POST", "/contacts/requests", {"user_id": bob.user_id})["room_id"]
    assert alice.laiwang("GET", "/contacts")["contacts"] == []
    wait_until(lambda: room in bob.invited_rooms())
    bob.join(room)
    wait_until(lambda: alice.user_id not in suggestions(bob))
    assert set(c["user_id"] for c in bob.laiwang("GET", "/contacts")["contacts"]) == {
        alice.user_id,
        dave.user_id,
    }


def test_non_discoverable_people_are_not_suggested(hs1):
    admin = hs1.new_user("admin", admin=True)
    bob, shy = hs1.new_user("bob"), hs1.new_user("shy")
    number = new_number()[1]
    admin_set_msisdns(admin, shy.user_id, [number])
    assert lookup(bob, [number]) == {number: shy.user_id}
    assert shy.user_id in suggestions(bob)
    shy.laiwang("PUT", "/settings", {"discoverable": False})
    assert shy.user_id not in suggestions(bob)
