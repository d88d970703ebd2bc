"""SQL for per-user settings."""

from __future__ import annotations

from typing import Any

from synapse.storage.database import LoggingTransaction

from laiwang_module.storage.base import StoreMixin


class SettingsStore(StoreMixin):
    """Mixin of LaiwangStore."""

    async def get_user_settings(self, user_id: str) -> dict[str, Any]:
        """The values the user has set (keys absent where they kept the default)."""

        def get_user_settings_txn(txn: LoggingTransaction) -> dict[str, Any]:
            txn.execute(
                "SELECT discoverable, accept_requests_from FROM laiwang_user_settings"
                " WHERE user_id = ?",
                (user_id,),
            )
            row = txn.fetchone()
            if row is None:
                return {}
            discoverable, accept_requests_from = row
            out: dict[str, Any] = {}
            if discoverable is not None:
                out["discoverable"] = bool(discoverable)
            if accept_requests_from is not None:
                out["accept_requests_from"] = accept_requests_from
            return out

        return await self.run("get_user_settings", get_user_settings_txn)

    async def get_discoverable_choices(self, user_ids: list[str]) -> dict[str, bool]:
        """The `discoverable` value each of these users set (absent: they kept the default)."""

        def get_discoverable_choices_txn(txn: LoggingTransaction) -> dict[str, bool]:
            chosen: dict[str, bool] = {}
            # Chunked so that a large address book never exceeds SQLite's parameter limit.
            for i in range(0, len(user_ids), 500):
                chunk = user_ids[i : i + 500]
                txn.execute(
                    "SELECT user_id, discoverable FROM laiwang_user_settings"
                    f" WHERE discoverable IS NOT NULL AND user_id IN ({','.join('?' * len(chunk))})",
                    chunk,
                )
                chosen.update((user_id, bool(value)) for user_id, value in txn.fetchall())
            return chosen

        return await self.run("get_discoverable_choices", get_discoverable_choices_txn)

    async def update_user_settings(self, user_id: str, update: dict[str, Any], now: int) -> None:
        def update_user_settings_txn(txn: LoggingTransaction) -> None:
            txn.execute(
                "INSERT INTO laiwang_user_settings (user_id, updated_ts) VALUES (?, ?)"
                " ON CONFLICT (user_id) DO NOTHING",
                (user_id, now),
            )
            for column in ("discoverable", "accept_requests_from"):
                if column in update:
                    # Column names come from this fixed tuple, never from input.
                    txn.execute(
                        f"UPDATE laiwang_user_settings SET {column} = ?, updated_ts = ?"
                        " WHERE user_id = ?",
                        (update[column], now, user_id),
                    )

        await self.run("update_user_settings", update_user_settings_txn)
