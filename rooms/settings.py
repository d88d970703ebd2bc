"""Per-user settings: their names, allowed values and validation."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rooms.errors import InvalidParam
from rooms.validation import reject_unknown_keys

# Who may send the user a contact request.
ACCEPT_REQUESTS_FROM_VALUES = ("address_book", "anyone", "nobody")

SETTINGS_KEYS = ("discoverable", "accept_requests_from")


def validate_settings_update(body: Mapping[str, Any]) -> dict[str, Any]:
    """Check a `PUT /settings` body; returns the keys to change.

    Every key is optional (a partial update), but unknown keys and wrong types are refused so that
    a typo never silently does nothing.
    """
    reject_unknown_keys(body, SETTINGS_KEYS)
    update: dict[str, Any] = {}
    if "discoverable" in body:
        if not isinstance(body["discoverable"], bool):
            raise InvalidParam("discoverable", "must be true or false")
        update["discoverable"] = body["discoverable"]
    if "accept_requests_from" in body:
        value = body["accept_requests_from"]
        if value not in ACCEPT_REQUESTS_FROM_VALUES:
            raise InvalidParam(
                "accept_requests_from",
                "must be one of " + ", ".join(f'"{v}"' for v in ACCEPT_REQUESTS_FROM_VALUES),
            )
        update["accept_requests_from"] = value
    return update
