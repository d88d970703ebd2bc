"""Two homeservers federating over loopback, both with the module loaded."""

from __future__ import annotations

import pytest

from tests.harness.client import wait_until
from tests.harness.social import make_acquainted

pytestmark = pytest.mark.federation


def test_invite_and_message_cross_servers(hs1, hs2):
    alice = hs1.new_user("alice")
    bob = hs2.new_user("bob")
    # The acquaintances-only policy is on by default: a contact request is the way in.
    room = make_acquainted(alice, bob)
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
    # Once acquainted, either may invite the other into any room, across servers.
    group = bob.create_room(preset="private_chat")
    bob.invite(group, alice.user_id)
    wait_until(lambda: group in alice.invited_rooms(), timeout=60)
