"""Money as integers: ISO 4217 codes, minor-unit exponents, per-currency limits and formatting.

An amount is always an integer count of the currency's minor unit (CNY 100.00 is 10000, JPY 500
is 500, KWD 1.005 is 1005), never a float. The currency list and the exponents come from the
CLDR data that Babel ships (`territory_currencies`, `currency_fractions`), which is maintained
upstream, rather than from a hand-typed table.

CLDR's `digits` are the decimals a currency is written with; for a handful of currencies (IQD,
IRR, LAK, HUF, COP, IDR, …) they are fewer than ISO 4217's minor unit. We use CLDR's, so that
"IDR 15000" is 15000 and never "IDR 15000.00"; docs/api/aa.md lists this.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from babel.core import get_global
from babel.numbers import get_currency_precision

from rooms.validation import InvalidParam

# Codes without a minor unit in ISO 4217 (precious metals, accounting units, test and "no
# currency" codes) and CNH, which is a market code, not ISO 4217: no one splits a bill in them.
_NOT_MONEY = frozenset(
    {"XAU", "XAG", "XPD", "XPT", "XBA", "XBB", "XBC", "XBD", "XDR", "XSU", "XUA", "XTS", "XXX"}
    | {"CNH"}
)

# The largest total of one bill, in major units: a billion of anything is not a dinner bill, and
# every limit stays below 2**53 so that JSON numbers survive JavaScript clients.
MAX_MAJOR_UNITS = 10**9
JSON_SAFE_MAX = 2**53 - 1


@lru_cache(maxsize=1)
def currencies() -> Mapping[str, int]:
    """Every currency in use today (CLDR: some territory's currency without an end date),
    mapped to its minor-unit exponent."""
    in_use: set[str] = set()
    for entries in get_global("territory_currencies").values():
        for code, _start, end, _tender in entries:
            if end is None:
                in_use.add(code)
    return {code: get_currency_precision(code) for code in sorted(in_use - _NOT_MONEY)}


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
