"""The module on a Synapse deployment with a generic worker (PostgreSQL and Redis).

Requests go to the worker's client port; the main process runs the background tasks. Nothing the
module knows lives in one process's memory, so either process answers the same.
"""

from __future__ import annotations

import pytest

from tests.harness.client import MatrixClient, MatrixError, wait_until

pytestmark = pytest.mark.postgres


def on(url: str, user: MatrixClient) -> MatrixClient:
    return MatrixClient(url, user.user_id, user.access_token)


def contacts(user: MatrixClient) -> set[str]:
    return {c["user_id"] for c in user.laiwang("GET", "/contacts")["contacts"]}


def test_settings_and_contacts_through_a_worker(worker_homeserver):
    main, worker = worker_homeserver
    alice, bob, zed = main.new_user("alice"), main.new_user("bob"), main.new_user("zed")
    alice_w, bob_w, zed_w = (on(worker.base_url, u) for u in (alice, bob, zed))

    # Settings written through the worker are read back from the main process.
    bob_w.laiwang("PUT", "/settings", {"accept_requests_from": "anyone"})
    assert bob.laiwang("GET", "/settings")["accept_requests_from"] == "anyone"
    r = bob_w.laiwang_raw("PUT", "/settings", data=b"{")
    assert (r.status_code, r.json()["errcode"]) == (400, "M_NOT_JSON")

    # A contact request made on the worker, accepted with a plain join on the main process.
    room = alice_w.laiwang("POST", "/contacts/requests", {"user_id": bob.user_id})["room_id"]
    wait_until(lambda: room in bob.invited_rooms())
    bob.join(room)
    wait_until(lambda: bob.user_id in contacts(alice_w) and alice.user_id in contacts(bob))
    assert contacts(alice) == {bob.user_id}  # once, whichever process indexed it

    # The policy holds on the worker, and its cache follows a change made elsewhere.
    group = alice_w.create_room(preset="private_chat")
    alice_w.invite(group, bob.user_id)
    stranger_room = zed_w.create_room(preset="private_chat")
    with pytest.raises(MatrixError) as e:
        zed_w.invite(stranger_room, bob.user_id)
    assert (e.value.status, e.value.errcode) == (403, "M_FORBIDDEN"), e.value.body
    bob.leave(room)  # ends the acquaintance (handled by whichever process is notified)
    wait_until(lambda: contacts(alice_w) == set())
    wait_until(lambda: _refused(alice_w, bob.user_id))


def _refused(user: MatrixClient, invitee: str) -> bool:
    room = user.create_room(preset="private_chat")  # fresh: a second invite fails anyway
    try:
        user.invite(room, invitee)
    except MatrixError as e:
        assert "not an acquaintance" in e.body["error"]
        return True
    return False
