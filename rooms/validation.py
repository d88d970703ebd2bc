"""Validators of pure code: Matrix identifiers and typed fields of JSON bodies and contents.

They raise the errors of `rooms.errors` (`M_INVALID_PARAM`, `M_MISSING_PARAM`), which the
module's HTTP layer answers as Matrix errors and the event checks turn into refusals.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from rooms.errors import InvalidParam, MissingParam


def reject_unknown_keys(
    body: Mapping[str, Any], known: Iterable[str], prefix: str | None = None
) -> None:
    """Refuse fields outside `known`; `prefix` names the block they sit in (`block.key`)."""
    allowed = set(known)
    for key in body:
        if key not in allowed:
            raise InvalidParam(f"{prefix}.{key}" if prefix else key, "is not a known field")


# The grammar of a Matrix user id: "@localpart:server_name". The localpart rules are the
# historical (permissive) ones so ids of older servers still pass.
_USER_ID_RE = re.compile(r"^@[\x21-\x39\x3b-\x7e]+:[A-Za-z0-9.\-\[\]:]+$")
_ROOM_ID_RE = re.compile(r"^![\x21-\x7e]+(:[A-Za-z0-9.\-\[\]:]+)?$")
_EVENT_ID_RE = re.compile(r"^\$[\x21-\x7e]+$")


_SERVER_NAME_RE = re.compile(r"^(\[[0-9A-Fa-f:.]{2,45}\]|[A-Za-z0-9.\-]{1,255})(:[0-9]{1,5})?$")


def is_server_name(value: Any) -> bool:
    """A server name that can be reached: an IP literal or a DNS name whose labels have 1 to 63
    characters, and a port up to 65535. The spec's grammar allows more, but a name DNS cannot
    carry names no server: asking it only waits for the resolver to time out."""
    if not isinstance(value, str):
        return False
    m = _SERVER_NAME_RE.match(value)
    if m is None:
        return False
    host, port = m.groups()
    if port is not None and int(port[1:]) > 65535:
        return False
    return host.startswith("[") or all(0 < len(label) <= 63 for label in host.split("."))


def is_user_id(value: Any) -> bool:
    return (
        isinstance(value, str)
        and len(value) <= 255
        and bool(_USER_ID_RE.match(value))
        and is_server_name(value.split(":", 1)[1])
    )


def is_room_id(value: Any) -> bool:
    """A room id; the part after its first colon, when it has one, is a server name (a v12
    room id has none)."""
    return (
        isinstance(value, str)
        and len(value) <= 255
        and bool(_ROOM_ID_RE.match(value))
        and (":" not in value or is_server_name(value.split(":", 1)[1]))
    )


def is_event_id(value: Any) -> bool:
    return isinstance(value, str) and len(value) <= 255 and bool(_EVENT_ID_RE.match(value))


def check_user_id(value: Any, param: str) -> str:
    """`value` as a user id (a path parameter, say), or InvalidParam naming `param`."""
    if not is_user_id(value):
        raise InvalidParam(param, "must be a Matrix user id like @alice:example.org")
    return str(value)


def check_room_id(value: Any, param: str) -> str:
    if not is_room_id(value):
        raise InvalidParam(param, "must be a Matrix room id like !abc:example.org")
    return str(value)


def check_event_id(value: Any, param: str) -> str:
    if not is_event_id(value):
        raise InvalidParam(param, "must be a Matrix event id")
    return str(value)


def require(body: Mapping[str, Any], key: str) -> Any:
    if key not in body or body[key] is None:
        raise MissingParam(key)
    return body[key]


def require_str(body: Mapping[str, Any], key: str, *, max_len: int = 1000) -> str:
    value = require(body, key)
    if not isinstance(value, str):
        raise InvalidParam(key, "must be a string")
    if len(value) > max_len:
        raise InvalidParam(key, f"must be at most {max_len} characters")
    return value


def optional_str(body: Mapping[str, Any], key: str, *, max_len: int = 1000) -> str | None:
    if body.get(key) is None:
        return None
    return require_str(body, key, max_len=max_len)


def require_user_id(body: Mapping[str, Any], key: str) -> str:
    return check_user_id(require(body, key), key)


def require_room_id(body: Mapping[str, Any], key: str) -> str:
    return check_room_id(require(body, key), key)


def require_int(
    body: Mapping[str, Any], key: str, *, minimum: int | None = None, maximum: int | None = None
) -> int:
    """An integer, never a float (1.0 too is refused) nor a boolean."""
    value = require(body, key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidParam(key, "must be an integer")
    if minimum is not None and value < minimum:
        raise InvalidParam(key, f"must be at least {minimum}")
    if maximum is not None and value > maximum:
        raise InvalidParam(key, f"must be at most {maximum}")
    return value


def is_ascii_digits(value: str) -> bool:
    """Only 0-9: `str.isdigit()` also accepts "²" (which int() refuses: a 500) and "٣" (which
    int() reads as 3)."""
    return value.isascii() and value.isdigit()


def parse_bounded_int(raw: str, param: str, *, minimum: int, maximum: int) -> int:
    """A query parameter of ASCII digits from `minimum` to `maximum`, or InvalidParam. The
    length is checked first: int() refuses (ValueError) strings of over 4,300 digits."""
    if (
        not is_ascii_digits(raw)
        or len(raw) > len(str(maximum))
        or not minimum <= int(raw) <= maximum
    ):
        raise InvalidParam(param, f"must be an integer from {minimum} to {maximum}")
    return int(raw)


def own_join(membership: Any, sender: Any, state_key: Any) -> bool:
    """A membership that counts as the user's own choice to be in a room: a join they sent
    themselves. (Matrix's auth rules refuse a join sent by anyone else; the rules that give a
    membership weight, such as being named a debtor, check it rather than rely on that.)"""
    return membership == "join" and isinstance(sender, str) and sender == state_key
