"""The few places where the module reads Synapse internals that ModuleApi does not expose.

Kept in one file so that a Synapse upgrade that moves them breaks here, visibly, and nowhere else.
"""

from __future__ import annotations

from typing import Any

from synapse.module_api import ModuleApi


def is_appservice_user(api: ModuleApi, user_id: str) -> bool:
    """Whether user_id is an application service's sender or in one's exclusive namespace."""
    store = api._store  # no ModuleApi accessor for registered application services
    for service in store.get_app_services():
        if service.sender.to_string() == user_id or service.is_exclusive_user(user_id):
            return True
    return False


async def share_a_room(api: ModuleApi, a: str, b: str) -> bool:
    """Whether two users are joined to at least one common room (cached by Synapse)."""
    store: Any = api._store  # cached descriptors need Synapse's mypy plugin to type-check
    return not (await store.get_rooms_for_user(a)).isdisjoint(await store.get_rooms_for_user(b))


async def invited_room_ids(api: ModuleApi, user_id: str) -> set[str]:
    """Rooms a local user is currently invited to (also by out-of-band federated invites)."""
    store: Any = api._store
    rooms = await store.get_invited_rooms_for_local_user(user_id)
    return {r.room_id for r in rooms}
