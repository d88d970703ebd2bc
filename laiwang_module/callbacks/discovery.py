"""Discovery upkeep: the hash index follows Synapse's msisdn 3pids; a job rotates the pepper.

`on_add_user_third_party_identifier` / `on_remove_user_third_party_identifier` run for every
3pid change made through Synapse (client API, admin API, deactivation), on the process that
made it; the index writes are idempotent upserts and deletes. A removed number and a
deactivation also delete address-book entries (`on_user_deactivation_status_changed` runs on the
process that deactivated; the deletes are idempotent). The job runs on the one
background-tasks process only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from laiwang_module.server import LaiwangServer

# How often the job looks at the pepper's age and expires old rows, at most.
MAX_JOB_INTERVAL_MS = 60_000
MIN_JOB_INTERVAL_MS = 1_000


class DiscoveryCallbacks:
    def __init__(self, server: LaiwangServer):
        self._server = server
        self._api = server.api
        self._config = server.config.discovery
        self._handler = server.discovery_handler

    def register(self) -> None:
        self._server.store.configure_discovery(self._config.address_book_ttl_ms)
        self._api.register_third_party_rules_callbacks(
            on_add_user_third_party_identifier=self.on_add_user_third_party_identifier,
            on_remove_user_third_party_identifier=self.on_remove_user_third_party_identifier,
            on_user_deactivation_status_changed=self.on_user_deactivation_status_changed,
        )
        if self._api.should_run_background_tasks():
            interval = min(
                MAX_JOB_INTERVAL_MS,
                max(MIN_JOB_INTERVAL_MS, self._config.pepper_rotation_period_ms // 4),
            )
            # At start (first index build, an interrupted rotation) and then periodically.
            self._api.run_as_background_process("laiwang_discovery_start", self._handler.maintain)
            self._api.looping_background_call(
                self._handler.maintain, interval, desc="laiwang_discovery"
            )

    async def on_add_user_third_party_identifier(
        self, user_id: str, medium: str, address: str
    ) -> None:
        await self._handler.on_threepid_added(user_id, medium, address)

    async def on_remove_user_third_party_identifier(
        self, user_id: str, medium: str, address: str
    ) -> None:
        await self._handler.on_threepid_removed(user_id, medium, address)

    async def on_user_deactivation_status_changed(
        self, user_id: str, deactivated: bool, by_admin: bool
    ) -> None:
        await self._handler.on_deactivation_changed(user_id, deactivated)
