"""Per-user settings: their names, allowed values and validation."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attr

from rooms.errors import InvalidParam
from rooms.validation import reject_unknown_keys

# Who may send the user a contact request.
ACCEPT_REQUESTS_FROM_VALUES = ("address_book", "anyone", "nobody")

SETTINGS_KEYS = ("discoverable", "accept_requests_from")


@attr.s(frozen=True, slots=True, auto_attribs=True)
class SettingsUpdate:
    """A `PUT /settings` body: None for a setting it leaves as it is."""

    discoverable: bool | None = None
    accept_requests_from: str | None = None

    def changes(self) -> dict[str, Any]:
        """The settings to change, by name."""
        return {k: v for k, v in attr.asdict(self).items() if v is not None}


def validate_settings_update(body: Mapping[str, Any]) -> SettingsUpdate:
    """Check a `PUT /settings` body.

    Every key is optional (a partial update), but unknown keys and wrong types are refused so that
    a typo never silently does nothing.
    """
    reject_unknown_keys(body, SETTINGS_KEYS)
    discoverable = body.get("discoverable")
    if "discoverable" in body and not isinstance(discoverable, bool):
        raise InvalidParam("discoverable", "must be true or false")
    accept = body.get("accept_requests_from")
    if "accept_requests_from" in body and accept not in ACCEPT_REQUESTS_FROM_VALUES:
        raise InvalidParam(
            "accept_requests_from",
            "must be one of " + ", ".join(f'"{v}"' for v in ACCEPT_REQUESTS_FROM_VALUES),
        )
    return SettingsUpdate(discoverable=discoverable, accept_requests_from=accept)
