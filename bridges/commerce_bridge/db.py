"""The bridge's own database (mautrix's async_db: SQLite through aiosqlite, or PostgreSQL
through asyncpg): the event-stream cursor, which mock events were handled or are being sent, the
shop rooms, the owners' direct chats and the uploaded images."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Any, cast

from mautrix.util.async_db import Connection, Database, UpgradeTable

upgrade_table = UpgradeTable()


async def upgrade_v1(conn: Any) -> None:
    await conn.execute("CREATE TABLE cursor (id INTEGER PRIMARY KEY, next TEXT NOT NULL)")
    # Mock events already posted: a restart between posting and moving the cursor posts none
    # twice.
    await conn.execute(
        "CREATE TABLE handled (event_id TEXT PRIMARY KEY, matrix_event_id TEXT NOT NULL)"
    )
    await conn.execute("CREATE TABLE shop_rooms (shop_id TEXT PRIMARY KEY, room_id TEXT NOT NULL)")
    await conn.execute("CREATE TABLE dm_rooms (user_id TEXT PRIMARY KEY, room_id TEXT NOT NULL)")
    await conn.execute("CREATE TABLE images (url TEXT PRIMARY KEY, mxc TEXT NOT NULL)")


upgrade_table.register(upgrade_v1, description="Initial schema")


async def upgrade_v2(conn: Any) -> None:
    # Mock events whose post was sent (or is being sent) but not yet recorded as handled: a
    # retry of one of these looks in the room for the post first, since the homeserver's
    # transaction-id deduplication does not survive its restart nor span workers.
    await conn.execute(
        "CREATE TABLE sending (event_id TEXT PRIMARY KEY, room_id TEXT NOT NULL,"
        " started_ts BIGINT NOT NULL)"
    )


upgrade_table.register(upgrade_v2, description="Record attempts to post before sending")


class BridgeDB:
    def __init__(self, url: str):
        self.db = Database.create(url, upgrade_table=upgrade_table)

    def _acquire(self) -> AbstractAsyncContextManager[Any]:
        return cast(AbstractAsyncContextManager[Any], self.db.acquire())

    async def start(self) -> None:
        await self.db.start()

    async def stop(self) -> None:
        await self.db.stop()

    async def cursor(self) -> str:
        value = await self.db.fetchval("SELECT next FROM cursor WHERE id = 1")
        return str(value) if value is not None else "0"

    async def is_handled(self, event_id: str) -> bool:
        found = await self.db.fetchval("SELECT 1 FROM handled WHERE event_id = $1", event_id)
        return found is not None

    async def attempted(self, event_id: str) -> bool:
        """Whether a post for this event may already have been sent (an attempt recorded)."""
        found = await self.db.fetchval("SELECT 1 FROM sending WHERE event_id = $1", event_id)
        return found is not None

    async def record_attempt(self, event_id: str, room_id: str, now_ms: int) -> None:
        """Record, committed before the send, that a post for this event goes to `room_id`."""
        await self.db.execute(
            "INSERT INTO sending (event_id, room_id, started_ts) VALUES ($1, $2, $3)"
            " ON CONFLICT (event_id) DO UPDATE SET room_id = excluded.room_id,"
            " started_ts = excluded.started_ts",
            event_id,
            room_id,
            now_ms,
        )

    async def mark_handled(self, event_id: str, matrix_event_id: str, next_cursor: str) -> None:
        """Record a posted event and move the cursor past it, together; its attempt is over."""
        async with self._acquire() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO handled (event_id, matrix_event_id) VALUES ($1, $2)"
                " ON CONFLICT (event_id) DO NOTHING",
                event_id,
                matrix_event_id,
            )
            await conn.execute("DELETE FROM sending WHERE event_id = $1", event_id)
            await self._set_cursor(conn, next_cursor)

    async def set_cursor(self, next_cursor: str) -> None:
        async with self._acquire() as conn:
            await self._set_cursor(conn, next_cursor)

    @staticmethod
    async def _set_cursor(conn: Connection, next_cursor: str) -> None:
        await conn.execute(
            "INSERT INTO cursor (id, next) VALUES (1, $1)"
            " ON CONFLICT (id) DO UPDATE SET next = excluded.next",
            next_cursor,
        )

    async def shop_room(self, shop_id: str) -> str | None:
        value = await self.db.fetchval("SELECT room_id FROM shop_rooms WHERE shop_id = $1", shop_id)
        return str(value) if value is not None else None

    async def set_shop_room(self, shop_id: str, room_id: str) -> None:
        await self.db.execute(
            "INSERT INTO shop_rooms (shop_id, room_id) VALUES ($1, $2)"
            " ON CONFLICT (shop_id) DO UPDATE SET room_id = excluded.room_id",
            shop_id,
            room_id,
        )

    async def dm_room(self, user_id: str) -> str | None:
        value = await self.db.fetchval("SELECT room_id FROM dm_rooms WHERE user_id = $1", user_id)
        return str(value) if value is not None else None

    async def set_dm_room(self, user_id: str, room_id: str) -> None:
        await self.db.execute(
            "INSERT INTO dm_rooms (user_id, room_id) VALUES ($1, $2)"
            " ON CONFLICT (user_id) DO UPDATE SET room_id = excluded.room_id",
            user_id,
            room_id,
        )

    async def forget_dm_room(self, user_id: str, room_id: str) -> None:
        await self.db.execute(
            "DELETE FROM dm_rooms WHERE user_id = $1 AND room_id = $2", user_id, room_id
        )

    async def image(self, url: str) -> str | None:
        value = await self.db.fetchval("SELECT mxc FROM images WHERE url = $1", url)
        return str(value) if value is not None else None

    async def set_image(self, url: str, mxc: str) -> None:
        await self.db.execute(
            "INSERT INTO images (url, mxc) VALUES ($1, $2) ON CONFLICT (url) DO NOTHING", url, mxc
        )
