"""How Laiwang's rooms look to every Matrix client: their room types, the space that groups a
user's Laiwang rooms, and the tag that moves auto-joined timelines out of the chat list.

Clients honour three standard things, and nothing Laiwang-specific:

- a room type in `m.room.create` (`creation_content.type`): fixed at creation, so it tells what
  a room is to any client or bot that reads it; rooms made before it have none, and no rule of
  the module reads it (timelines and clusters are recognised by their state events and the
  module's records, as before);
- a space (`m.space`) whose `m.space.child` events list the user's timelines and shop rooms:
  Element keeps rooms in a space out of Home, and every space-aware client shows them under it;
- the `m.lowpriority` tag (the user's `m.tag` room account data): the "Low priority" section
  at the bottom of Element's and nheko's lists.
"""

from __future__ import annotations

from typing import Any

# Room types of the rooms the module creates. Contact-request rooms stay untyped DMs: once
# accepted they are the two acquaintances' chat, which belongs in the chat list.
TIMELINE_ROOM_TYPE = "org.laiwang.timeline"
CLUSTER_ROOM_TYPE = "org.laiwang.cluster"
SPACE_ROOM_TYPE = "m.space"

LOW_PRIORITY = "m.lowpriority"
SPACE_NAME = "Laiwang"
SPACE_TOPIC = "Your acquaintances' timelines and the shops you follow, kept out of your chats."

# `order` of a space child (Element sorts children by it): the user's own timeline first.
OWN_TIMELINE_ORDER = "0"
TIMELINE_ORDER = "1"
SHOP_ORDER = "2"


def space_room_config() -> dict[str, Any]:
    """The /createRoom body of a user's Laiwang space: private, the user alone in it, and only
    they change its state (its children are sent in their name)."""
    return {
        "preset": "private_chat",
        "name": SPACE_NAME,
        "topic": SPACE_TOPIC,
        "creation_content": {"type": SPACE_ROOM_TYPE},
        "power_level_content_override": {"events_default": 100, "state_default": 100},
    }


def child_content(via: list[str], order: str) -> dict[str, Any]:
    """The content of the `m.space.child` event listing a room (an empty content removes it)."""
    return {"via": sorted(set(via)), "order": order, "suggested": False}
