"""Two homeservers federating over loopback, both with the module loaded."""

from __future__ import annotations

import pytest

from tests.harness.client import wait_until

pytestmark = pytest.mark.federation


def test_invite_and_message_cross_servers(hs1, hs2):
    alice = hs1.new_user("alice")
    bob = hs2.new_user("bob")
    room = alice.create_room(preset="private_chat")
    alice.laiwang("PUT", "/settings", {"accept_requests_from": "anyone"})
    alice.invite(room, bob.user_id)
    wait_until(lambda: room in bob.invited_rooms(), timeout=60)
    bob.join(room, via=[hs1.server_name])
    alice.send_text(room, "你好 from the first server")
    wait_until(
        lambda: (
            "你好 from the first server" in [e["content"].get("body") for e in bob.messages(room)]
        ),
        timeout=60,
    )
    bob.send_text(room, "hello back")
    wait_until(
        lambda: "hello back" in [e["content"].get("body") for e in alice.messages(room)],
        timeout=60,
    )
