"""A Synapse module that registers exactly the callbacks laiwang registers and does nothing.

The overhead benchmark's third server: what Synapse itself spends once a module hooks these
callbacks, apart from anything the module does. Each callback answers at once with the
"allow / no change" answer. The counts match laiwang's (laiwang_module/callbacks/*.py), since
Synapse runs every registered callback of a kind in turn:

- spam checker: check_event_for_spam x2 (aa, shares), federated_user_may_invite x2 (contacts,
  shares), user_may_invite, user_may_create_room, check_username_for_spam (contacts);
- third-party rules: on_new_event x5 (aa, contacts, shares, clusters, spaces),
  on_add/remove_user_third_party_identifier, on_user_deactivation_status_changed (discovery);
- add_extra_fields_to_unsigned_client_event x2 (aa, shares);
- password auth provider: is_3pid_allowed (msisdn).

Not copied: laiwang's web resources (only its own paths reach them), cached functions (only
registered, for invalidation) and background jobs (not on the request path).
"""

from __future__ import annotations

from typing import Any, Literal

from synapse.events import EventBase
from synapse.module_api import NOT_SPAM, ModuleApi, UserProfile
from synapse.types import StateMap

ON_NEW_EVENT = 5
CHECK_EVENT_FOR_SPAM = 2
FEDERATED_USER_MAY_INVITE = 2
ADD_FIELD_TO_UNSIGNED = 2


async def check_event_for_spam(event: EventBase) -> Literal["NOT_SPAM"]:
    return NOT_SPAM


async def user_may_invite(inviter: str, invitee: str, room_id: str) -> Literal["NOT_SPAM"]:
    return NOT_SPAM


async def federated_user_may_invite(event: EventBase) -> Literal["NOT_SPAM"]:
    return NOT_SPAM


async def user_may_create_room(user_id: str, room_config: dict[str, Any]) -> Literal["NOT_SPAM"]:
    return NOT_SPAM


async def check_username_for_spam(profile: UserProfile, requester_id: str) -> bool:
    return False  # not spam: the user is listed


async def on_new_event(event: EventBase, state: StateMap[EventBase]) -> None:
    return None


async def on_threepid_changed(user_id: str, medium: str, address: str) -> None:
    return None


async def on_user_deactivation_status_changed(
    user_id: str, deactivated: bool, by_admin: bool
) -> None:
    return None


async def add_field_to_unsigned(event: EventBase) -> dict[str, Any]:
    return {}


async def is_3pid_allowed(medium: str, address: str, registration: bool) -> bool:
    return True


class NoopHooksModule:
    def __init__(self, config: dict[str, Any], api: ModuleApi):
        # Registered one call per callback, as laiwang's features do (Synapse appends each).
        for _ in range(CHECK_EVENT_FOR_SPAM):
            api.register_spam_checker_callbacks(check_event_for_spam=check_event_for_spam)
        for _ in range(FEDERATED_USER_MAY_INVITE):
            api.register_spam_checker_callbacks(federated_user_may_invite=federated_user_may_invite)
        api.register_spam_checker_callbacks(
            user_may_invite=user_may_invite,
            user_may_create_room=user_may_create_room,
            check_username_for_spam=check_username_for_spam,
        )
        for _ in range(ON_NEW_EVENT):
            api.register_third_party_rules_callbacks(on_new_event=on_new_event)
        api.register_third_party_rules_callbacks(
            on_add_user_third_party_identifier=on_threepid_changed,
            on_remove_user_third_party_identifier=on_threepid_changed,
            on_user_deactivation_status_changed=on_user_deactivation_status_changed,
        )
        for _ in range(ADD_FIELD_TO_UNSIGNED):
            api.register_add_extra_fields_to_unsigned_client_event_callbacks(
                add_field_to_unsigned_callback=add_field_to_unsigned
            )
        api.register_password_auth_provider_callbacks(is_3pid_allowed=is_3pid_allowed)

    @staticmethod
    def parse_config(config: dict[str, Any]) -> dict[str, Any]:
        return config
