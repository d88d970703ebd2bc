"""Making users acquainted through the real contact-request flow, for any feature's tests."""

from __future__ import annotations

from tests.harness.client import MatrixClient, wait_until


def make_acquainted(a: MatrixClient, b: MatrixClient) -> str:
    """a asks b (who lets anyone ask), b joins with a plain Matrix join; returns the room id.

    Works across servers; returns once both sides' servers list the acquaintance."""
    b.laiwang("PUT", "/settings", {"accept_requests_from": "anyone"})
    room_id = str(a.laiwang("POST", "/contacts/requests", {"user_id": b.user_id})["room_id"])
    wait_until(lambda: room_id in b.invited_rooms(), timeout=60)
    b.join_invited(room_id, via=[a.user_id.split(":", 1)[1]])
    wait_until(lambda: _lists(a, b), timeout=60)
    wait_until(lambda: _lists(b, a), timeout=60)
    return room_id


def _lists(me: MatrixClient, other: MatrixClient) -> bool:
    return other.user_id in {c["user_id"] for c in me.laiwang("GET", "/contacts")["contacts"]}
