"""Query-parameter integers: ASCII digits only, bounded before int() sees them."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rooms.clusters import validate_limit
from rooms.errors import InvalidParam
from rooms.shares import decode_cursor, parse_feed_limit
from rooms.validation import (
    is_ascii_digits,
    is_room_id,
    is_server_name,
    is_user_id,
    parse_bounded_int,
)

NOT_ASCII_DIGITS = ["²", "¹⁰", "٣", "３", "1²", "", " 1", "1 ", "+1", "-1", "1.0", "1e2", "0x10"]


@pytest.mark.parametrize("raw", NOT_ASCII_DIGITS)
@pytest.mark.parametrize("parse", [validate_limit, parse_feed_limit])
def test_limits_refuse_anything_but_ascii_digits(parse, raw: str) -> None:
    if raw == "" and parse is parse_feed_limit:
        assert parse(raw) == 20  # the feed reads an empty limit as the default
        return
    with pytest.raises(InvalidParam) as e:
        parse(raw)
    assert (e.value.param, e.value.errcode) == ("limit", "M_INVALID_PARAM")


@pytest.mark.parametrize("raw", ["0", "101", "9" * 5000, "0" * 5000 + "1"])
def test_limits_refuse_out_of_range_and_huge(raw: str) -> None:
    for parse in (validate_limit, parse_feed_limit):
        with pytest.raises(InvalidParam):
            parse(raw)


@given(st.text(max_size=12))
def test_parse_bounded_int_never_raises_anything_else(raw: str) -> None:
    try:
        value = parse_bounded_int(raw, "n", minimum=1, maximum=100)
    except InvalidParam:
        return
    assert 1 <= value <= 100 and is_ascii_digits(raw)


def test_cursor_timestamp_must_be_ascii_digits() -> None:
    token = base64.urlsafe_b64encode("٣|$event".encode()).decode().rstrip("=")
    with pytest.raises(InvalidParam) as e:
        decode_cursor(token)
    assert e.value.param == "from"


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("example.org", True),
        ("localhost:8448", True),
        ("1.2.3.4", True),
        ("[::1]:8448", True),
        ("0", True),
        ("a" * 63 + ".org", True),
        ("a" * 64 + ".org", False),  # a DNS label has at most 63 characters
        ("0" * 251, False),
        ("example.org.", False),
        ("example..org", False),
        ("example.org:65536", False),
        ("example.org:", False),
        ("exa mple.org", False),
        ("ex\u0430mple.org", False),  # a Cyrillic a: a confusable is not a server name
    ],
)
def test_server_names_are_reachable_names(value: str, ok: bool) -> None:
    assert is_server_name(value) is ok
    assert is_user_id(f"@a:{value}") is ok
    assert is_room_id(f"!a:{value}") is ok


def test_a_v12_room_id_has_no_server_name() -> None:
    assert is_room_id("!" + "A" * 43)
