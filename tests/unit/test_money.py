"""Currencies, exponents, limits and formatting."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rooms.errors import InvalidParam
from rooms.money import (
    JSON_SAFE_MAX,
    currencies,
    exponent,
    format_amount,
    is_currency,
    max_amount,
    require_amount,
    require_currency,
)


@pytest.mark.parametrize(
    "code, digits",
    [("CNY", 2), ("USD", 2), ("EUR", 2), ("JPY", 0), ("KRW", 0), ("VND", 0), ("ISK", 0),
     ("KWD", 3), ("BHD", 3), ("JOD", 3), ("OMR", 3), ("TND", 3), ("CLF", 4),
     # ISO 4217, not CLDR's display digits (CLDR writes these with fewer decimals)
     ("IQD", 3), ("IDR", 2), ("HUF", 2), ("COP", 2)],
)  # fmt: skip
def test_exponents_are_iso_4217(code, digits):
    assert exponent(code) == digits


def test_the_list_is_the_maintained_one_not_a_handful():
    assert len(currencies()) > 150
    # Withdrawn currencies, metals and test codes are not money for a bill.
    for code in ("DEM", "FRF", "XAU", "XXX", "XTS", "CNH", "cny", "", "CN"):
        assert not is_currency(code)


@pytest.mark.parametrize(
    "amount, code, text",
    [(10000, "CNY", "CNY 100.00"), (3334, "CNY", "CNY 33.34"), (5, "CNY", "CNY 0.05"),
     (500, "JPY", "JPY 500"), (1005, "KWD", "KWD 1.005"), (1, "CLF", "CLF 0.0001"),
     (-250, "USD", "USD -2.50")],
)  # fmt: skip
def test_format(amount, code, text):
    assert format_amount(amount, code) == text


@pytest.mark.parametrize("bad", [0, -1, 1.0, 1.5, "100", None, True, [1], 10**20])
def test_bad_amounts_are_refused(bad):
    with pytest.raises(InvalidParam):
        require_amount(bad, "CNY", "total")


def test_limits_depend_on_the_exponent_and_stay_json_safe():
    assert max_amount("JPY") == 10**9
    assert max_amount("CNY") == 10**11
    assert max_amount("CLF") == 10**13
    assert all(max_amount(c) <= JSON_SAFE_MAX for c in currencies())
    assert require_amount(max_amount("JPY"), "JPY", "total") == 10**9
    with pytest.raises(InvalidParam):
        require_amount(max_amount("JPY") + 1, "JPY", "total")


@pytest.mark.parametrize("bad", ["ABC", "cny", 156, None, "CNY "])
def test_unknown_currency(bad):
    with pytest.raises(InvalidParam):
        require_currency(bad)


@given(st.sampled_from(sorted(currencies())), st.integers(min_value=-(10**15), max_value=10**15))
def test_format_round_trips(code, amount):
    text = format_amount(amount, code)
    assert text.startswith(code + " ")
    number = text.split(" ", 1)[1]
    digits = exponent(code)
    assert (len(number.split(".")[1]) if "." in number else 0) == digits
    assert int(number.replace(".", "").replace("-", "")) * (-1 if amount < 0 else 1) == amount
