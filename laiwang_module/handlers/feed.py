"""The feed: newest posts first across the caller's and their acquaintances' timelines.

One indexed query gives the page (post ids with their reaction and comment counts, see
`storage/timeline.py`); Synapse's own visibility rules then decide which of those events the
caller may see (a post of a timeline the caller has not joined yet is left out), and Synapse's
serializer renders them as `/messages` would. The cursor is the last row the query returned, not
the last one shown, so pagination is stable whatever the visibility check removes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from laiwang_module.synapse_compat import events_visible_to, serialize_for_client
from rooms.shares import FeedCursor

if TYPE_CHECKING:
    from laiwang_module.server import LaiwangServer


class FeedHandler:
    def __init__(self, server: LaiwangServer):
        self._api = server.api
        self._store = server.store

    async def get_feed(self, user_id: str, limit: int, before: FeedCursor | None) -> dict[str, Any]:
        rows = await self._store.get_feed(
            user_id, limit, (before.ts, before.event_id) if before is not None else None
        )
        visible = await events_visible_to(self._api, user_id, [r.event_id for r in rows])
        serialized = await serialize_for_client(self._api, user_id, visible)
        counts = {r.event_id: r for r in rows}
        chunk = []
        for event in serialized:
            row = counts[event["event_id"]]
            chunk.append({**event, "reactions": row.reactions, "comments": row.comments})
        out: dict[str, Any] = {"chunk": chunk}
        if len(rows) == limit:
            out["next_batch"] = FeedCursor(rows[-1].ts, rows[-1].event_id).encode()
        return out
