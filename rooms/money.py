"""Money as integers: ISO 4217 codes, minor-unit exponents, per-currency limits and formatting.

An amount is always an integer count of the currency's minor unit (CNY 100.00 is 10000, JPY 500
is 500, KWD 1.005 is 1005), never a float. The currency list and the exponents are ISO 4217's
own table, as the `iso4217` package ships it (kept current with the ISO maintenance agency's
amendments), rather than a hand-typed dict: the wire contract names ISO 4217 exponents.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from iso4217 import Currency

from rooms.errors import InvalidParam

# The largest total of one bill, in major units: a billion of anything is not a dinner bill, and
# every limit stays below 2**53 so that JSON numbers survive JavaScript clients.
MAX_MAJOR_UNITS = 10**9
JSON_SAFE_MAX = 2**53 - 1


@lru_cache(maxsize=1)
def currencies() -> Mapping[str, int]:
    """Every ISO 4217 currency with a minor unit, mapped to its exponent. Codes without one
    (precious metals, accounting units, test and "no currency" codes) are not money one splits
    a bill in."""
    return {c.code: c.exponent for c in Currency if c.exponent is not None}


def is_currency(code: Any) -> bool:
    return isinstance(code, str) and code in currencies()


def exponent(code: str) -> int:
    """The number of decimals of the currency's minor unit (CNY 2, JPY 0, KWD 3)."""
    return currencies()[code]


def max_amount(code: str) -> int:
    """The largest amount (in minor units) a bill in this currency may total."""
    return min(MAX_MAJOR_UNITS * 10 ** exponent(code), JSON_SAFE_MAX)


def require_currency(value: Any, param: str = "currency") -> str:
    if not isinstance(value, str):
        raise InvalidParam(param, "must be an ISO 4217 currency code such as CNY")
    if not is_currency(value):
        raise InvalidParam(param, f"'{value[:16]}' is not a known ISO 4217 currency code")
    return value


def require_amount(value: Any, currency: str, param: str) -> int:
    """A positive integer count of minor units within the currency's limit."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidParam(
            param, f"must be an integer number of {currency} minor units (no floats, no strings)"
        )
    if value <= 0:
        raise InvalidParam(param, "must be a positive amount")
    limit = max_amount(currency)
    if value > limit:
        raise InvalidParam(param, f"must be at most {format_amount(limit, currency)}")
    return value


def format_amount(amount: int, currency: str) -> str:
    """'CNY 100.00', 'JPY 500', 'KWD 1.005': the code, then the amount with its minor digits."""
    digits = exponent(currency)
    sign = "-" if amount < 0 else ""
    whole, minor = divmod(abs(amount), 10**digits)
    if digits == 0:
        return f"{currency} {sign}{whole}"
    return f"{currency} {sign}{whole}.{minor:0{digits}d}"
