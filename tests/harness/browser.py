"""Whether a browser test may run: skip without a browser, but fail with CI=true."""

from __future__ import annotations

import os

import pytest

from devtools.browser import why_no_browser


def require_browser() -> None:
    missing = why_no_browser()
    if missing is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true but {missing}")
    pytest.skip(missing)
