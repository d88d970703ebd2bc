"""Print laiwang_module/webapp/currencies.js: the ISO 4217 exponents of rooms.money, for the
web companion's AA preview (the browser must use the same minor units as the server).

    python -m devtools.web_currencies > laiwang_module/webapp/currencies.js
"""

from __future__ import annotations

import json

from rooms import money


def render() -> str:
    table = json.dumps(dict(sorted(money.currencies().items())), separators=(",", ":"))
    return (
        "// ISO 4217 minor-unit exponents, exactly rooms.money.currencies() "
        "(tests/unit/test_web.py checks it).\n"
        "// Generated: python -m devtools.web_currencies > laiwang_module/webapp/currencies.js\n"
        f"export const EXPONENTS = Object.freeze({table});\n"
    )


if __name__ == "__main__":
    print(render(), end="")
