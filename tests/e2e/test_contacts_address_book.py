"""The request policy and suggestions that rest on the address book (discovery lookups)."""

from __future__ import annotations

from urllib.parse import quote

import pytest

from tests.harness.client import MatrixError, wait_until
from tests.harness.discovery import lookup
from tests.harness.msisdn import admin_set_msisdns, new_number
from tests.harness.servers import sql
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
    assert (e.value.status, e.value.errcode) == (403, "M_FORBIDDEN"), e.value.body

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


def book_rows(hs, user_id: str) -> list[tuple[str, str]]:
    """Every address-book row naming `user_id`, as a database reader sees them."""
    return sql(
        hs,
        "SELECT owner_id, contact_id FROM laiwang_address_book"
        " WHERE owner_id = ? OR contact_id = ? ORDER BY 1, 2",
        user_id,
        user_id,
    )


def test_hidden_and_deactivated_people_vanish_from_suggestions(hs1):
    admin = hs1.new_user("admin", admin=True)
    victim, shy, gone, listed = (hs1.new_user(n) for n in ("victim", "shy", "gone", "listed"))
    numbers = {u.user_id: new_number()[1] for u in (victim, gone, listed)}
    for user_id, number in numbers.items():
        admin_set_msisdns(admin, user_id, [number])
    # shy and gone have the victim's number; the victim has gone's and listed's.
    lookup(shy, [numbers[victim.user_id]])
    lookup(gone, [numbers[victim.user_id]])
    lookup(victim, [numbers[gone.user_id], numbers[listed.user_id]])
    assert suggestions(victim) == {
        shy.user_id: {
            "user_id": shy.user_id,
            "reason": "has_you_in_their_address_book",
            "mutual_count": 0,
        },
        gone.user_id: {
            "user_id": gone.user_id,
            "reason": "in_your_address_book",
            "mutual_count": 0,
        },
        listed.user_id: {
            "user_id": listed.user_id,
            "reason": "in_your_address_book",
            "mutual_count": 0,
        },
    }

    # shy hides: their own book no longer reveals them, at once.
    shy.laiwang("PUT", "/settings", {"discoverable": False})
    assert shy.user_id not in suggestions(victim)
    # gone is deactivated: gone from the victim's suggestions either way round.
    admin.call("POST", f"/_synapse/admin/v1/deactivate/{quote(gone.user_id)}", {})
    assert set(suggestions(victim)) == {listed.user_id}
    assert victim.laiwang("GET", "/contacts")["contacts"] == []


def test_deactivation_with_erase_empties_both_sides_of_the_address_book(hs1):
    admin = hs1.new_user("admin", admin=True)
    leaver, owner, friend = hs1.new_user("leaver"), hs1.new_user("owner"), hs1.new_user("friend")
    n_leaver, n_friend = new_number()[1], new_number()[1]
    admin_set_msisdns(admin, leaver.user_id, [n_leaver])
    admin_set_msisdns(admin, friend.user_id, [n_friend])
    lookup(owner, [n_leaver])
    lookup(leaver, [n_friend])
    assert book_rows(hs1, leaver.user_id) == [
        (leaver.user_id, friend.user_id),
        (owner.user_id, leaver.user_id),
    ]
    admin.call("POST", f"/_synapse/admin/v1/deactivate/{quote(leaver.user_id)}", {"erase": True})
    # Stated: gone when the deactivation request returns.
    assert book_rows(hs1, leaver.user_id) == []
    assert leaver.user_id not in suggestions(owner)
    assert leaver.user_id not in suggestions(friend)


def test_a_removed_number_no_longer_passes_the_address_book_gate(hs1):
    admin = hs1.new_user("admin", admin=True)
    former, bob = hs1.new_user("former"), hs1.new_user("bob")
    number = new_number()[1]
    admin_set_msisdns(admin, former.user_id, [number])
    # bob (accept_requests_from=address_book by default) has the number in his book.
    assert lookup(bob, [number]) == {number: former.user_id}
    assert book_rows(hs1, former.user_id) == [(bob.user_id, former.user_id)]

    admin_set_msisdns(admin, former.user_id, [])
    # Stated: gone when the removal returns.
    assert book_rows(hs1, former.user_id) == []
    with pytest.raises(MatrixError) as e:
        former.laiwang("POST", "/contacts/requests", {"user_id": bob.user_id})
    assert (e.value.status, e.value.errcode) == (403, "M_FORBIDDEN")
    assert former.user_id not in suggestions(bob)
    # Nothing reached bob.
    assert bob.laiwang("GET", "/contacts")["contacts"] == []
    assert bob.invited_rooms() == set()


def test_source_is_request_when_the_target_was_hidden(hs1):
    admin = hs1.new_user("admin", admin=True)
    asker, hidden = hs1.new_user("asker"), hs1.new_user("hidden")
    number = new_number()[1]
    admin_set_msisdns(admin, hidden.user_id, [number])
    hidden.laiwang("PUT", "/settings", {"discoverable": False, "accept_requests_from": "anyone"})
    # The hidden number is in asker's book, but the lookup did not show it.
    assert lookup(asker, [number]) == {}
    assert book_rows(hs1, hidden.user_id) == [(asker.user_id, hidden.user_id)]

    room = asker.laiwang("POST", "/contacts/requests", {"user_id": hidden.user_id})["room_id"]
    wait_until(lambda: room in hidden.invited_rooms())
    hidden.join(room)
    wait_until(lambda: hidden.user_id in contacts(asker))
    assert contacts(asker)[hidden.user_id]["source"] == "request"
    assert contacts(hidden)[asker.user_id]["source"] == "request"

    # The same request to a discoverable target says how they met.
    found = hs1.new_user("found")
    number = new_number()[1]
    admin_set_msisdns(admin, found.user_id, [number])
    found.laiwang("PUT", "/settings", {"accept_requests_from": "anyone"})
    assert lookup(asker, [number]) == {number: found.user_id}
    room = asker.laiwang("POST", "/contacts/requests", {"user_id": found.user_id})["room_id"]
    wait_until(lambda: room in found.invited_rooms())
    found.join(room)
    wait_until(lambda: found.user_id in contacts(asker))
    assert contacts(asker)[found.user_id]["source"] == "address_book"
    assert contacts(found)[asker.user_id]["source"] == "address_book"


def contacts(user) -> dict[str, dict]:
    return {c["user_id"]: c for c in user.laiwang("GET", "/contacts")["contacts"]}
