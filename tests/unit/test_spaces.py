"""rooms/spaces.py: the room types the module gives its rooms, the space's /createRoom body and
its children; and that the rules recognising timelines do not depend on the type (rooms made
before it have none)."""

from __future__ import annotations

from typing import Any

import pytest

from rooms import shares, spaces
from rooms.clusters import Cluster, create_room_config

OWNER = "@alice:a.test"


def test_timelines_and_clusters_are_typed_contact_rooms_are_not() -> None:
    timeline = shares.timeline_room_config(OWNER, "alice's timeline")
    assert timeline["creation_content"] == {"type": "org.laiwang.timeline"}
    cluster = create_room_config(Cluster(creator=OWNER, topic="Hiking"))
    assert cluster["creation_content"] == {"type": "org.laiwang.cluster"}


def test_the_space_is_a_private_space_only_its_owner_changes() -> None:
    config = spaces.space_room_config()
    assert config["creation_content"] == {"type": "m.space"}
    assert config["preset"] == "private_chat"
    assert config["name"] == "Laiwang"
    assert config["power_level_content_override"]["state_default"] == 100
    assert "invite" not in config  # the user alone


def test_child_content() -> None:
    content = spaces.child_content(["b.test", "a.test", "b.test"], spaces.TIMELINE_ORDER)
    assert content == {"via": ["a.test", "b.test"], "order": "1", "suggested": False}
    # The user's own timeline sorts first, then acquaintances', then shops.
    assert spaces.OWN_TIMELINE_ORDER < spaces.TIMELINE_ORDER < spaces.SHOP_ORDER


@pytest.mark.parametrize("room_type", [None, "org.laiwang.timeline"], ids=["before", "typed"])
def test_a_timeline_is_recognised_with_or_without_its_type(room_type: str | None) -> None:
    create: dict[str, Any] = {"type": "m.room.create", "state_key": "", "sender": OWNER}
    create["content"] = {} if room_type is None else {"type": room_type}
    stripped = [
        create,
        {
            "type": shares.TIMELINE_STATE,
            "state_key": "",
            "sender": OWNER,
            "content": {"owner": OWNER},
        },
    ]
    assert shares.find_timeline_in_stripped_state(stripped) == OWNER
    assert shares.stripped_creator(stripped) == OWNER
    assert shares.is_real_timeline(OWNER, OWNER, {"owner": OWNER}, OWNER)
