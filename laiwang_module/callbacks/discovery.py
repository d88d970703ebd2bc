"""Discovery upkeep: the hash index follows Synapse's msisdn 3pids; a job rotates the pepper.

`on_add_user_third_party_identifier` / `on_remove_user_third_party_identifier` run for every
3pid change made through Synapse (client API, admin API, deactivation), on the process that
made it; the index writes are idempotent upserts and deletes. The job runs on the one
background-tasks process only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from laiwang_module.server import LaiwangServer

# How often the job looks at the pepper's age and expires old rows, at most.
MAX_JOB_INTERVAL_MS = 60_000
MIN_JOB_INTERVAL_MS = 1_000


def register(server: LaiwangServer) -> None:
    config = server.config.discovery
    server.store.configure_discovery(config.address_book_ttl_ms)

    async def on_add(user_id: str, medium: str, address: str) -> None:
        await server.discovery_handler.on_threepid_added(user_id, medium, address)

    async def on_remove(user_id: str, medium: str, address: str) -> None:
        await server.discovery_handler.on_threepid_removed(user_id, medium, address)

    server.api.register_third_party_rules_callbacks(
        on_add_user_third_party_identifier=on_add,
        on_remove_user_third_party_identifier=on_remove,
    )

    if server.api.should_run_background_tasks():
        interval = min(
            MAX_JOB_INTERVAL_MS, max(MIN_JOB_INTERVAL_MS, config.pepper_rotation_period_ms // 4)
        )
        # At start (first index build, an interrupted rotation) and then periodically.
        server.api.run_as_background_process(
            "laiwang_discovery_start", server.discovery_handler.maintain
        )
        server.api.looping_background_call(
            server.discovery_handler.maintain, interval, desc="laiwang_discovery"
        )
