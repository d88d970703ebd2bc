"""The web companion's static resource (laiwang_module/rest/web.py) and its shipped files."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from twisted.web.test.requesthelper import DummyRequest

from devtools import browser, web_currencies
from laiwang_module.config import parse_config
from laiwang_module.rest.web import (
    APP_DIR,
    CONTENT_SECURITY_POLICY,
    WEB_PREFIX,
    WebResource,
    load_files,
)
from rooms import money
from tests.harness.browser import require_browser


def get(resource: WebResource, path: str) -> tuple[int, dict[str, str], bytes]:
    request = DummyRequest([])
    request.path = path.encode()  # type: ignore[attr-defined]  # set by a real Request
    body = resource.render_GET(request)  # type: ignore[arg-type]
    headers = {
        k.decode().lower(): v[0].decode() for k, v in request.responseHeaders.getAllRawHeaders()
    }
    return request.responseCode or 200, headers, body


@pytest.fixture(scope="module")
def resource() -> WebResource:
    return WebResource(load_files())


@pytest.mark.parametrize(
    "name, content_type",
    [
        ("", "text/html; charset=utf-8"),
        ("index.html", "text/html; charset=utf-8"),
        ("app.js", "text/javascript; charset=utf-8"),
        ("money.js", "text/javascript; charset=utf-8"),
        ("app.css", "text/css; charset=utf-8"),
        ("icon.svg", "image/svg+xml"),
    ],
)
def test_files_are_served_with_their_type_and_the_policy(
    resource: WebResource, name: str, content_type: str
) -> None:
    status, headers, body = get(resource, f"{WEB_PREFIX}/{name}")
    assert status == 200
    assert headers["content-type"] == content_type
    assert headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert headers["x-content-type-options"] == "nosniff"
    assert body == (APP_DIR / (name or "index.html")).read_bytes()


def test_the_policy_allows_this_origin_only() -> None:
    directives = dict(d.strip().split(" ", 1) for d in CONTENT_SECURITY_POLICY.split(";"))
    assert directives["default-src"] == "'none'"
    assert directives["script-src"] == "'self'"  # no inline script, no eval, no CDN
    assert directives["connect-src"] == "'self'"
    for value in directives.values():
        assert "http" not in value and "*" not in value and "unsafe" not in value


def test_the_bare_prefix_redirects_to_the_app(resource: WebResource) -> None:
    status, headers, _ = get(resource, WEB_PREFIX)
    assert status == 301
    assert headers["location"] == WEB_PREFIX + "/"


@pytest.mark.parametrize(
    "path",
    [
        "/../__init__.py",
        "/..%2f__init__.py",
        "/%2e%2e/rest/web.py",
        "/webapp/app.js",
        "/./app.js",
        "//etc/passwd",
        "/app.js/",
        "/missing.js",
        "/APP.JS",
        "/app.js%00.html",
        "x/app.js",
    ],
)
def test_nothing_outside_the_shipped_files_is_served(resource: WebResource, path: str) -> None:
    status, headers, body = get(resource, WEB_PREFIX + path)
    assert status == 404
    assert body == b"Not found\n"
    assert headers["content-security-policy"] == CONTENT_SECURITY_POLICY


def test_only_files_directly_in_the_app_folder_are_loaded(tmp_path: Path) -> None:
    (tmp_path / "a.js").write_text("x")
    (tmp_path / "notes.py").write_text("secret")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.js").write_text("y")
    assert load_files(tmp_path) == {"a.js": (b"x", "text/javascript; charset=utf-8")}


def test_the_app_loads_nothing_from_elsewhere() -> None:
    """No absolute URL in what the browser loads: scripts, styles, images come from here."""
    for path in APP_DIR.iterdir():
        text = path.read_text()
        assert not re.search(r"""(src|href)=["']?(https?:)?//""", text), path.name
        assert not re.search(r"""(import|from)\s*\(?\s*["'](https?:)?//""", text), path.name
        assert "@import" not in text and "url(http" not in text, path.name


def test_the_browser_uses_the_servers_currency_exponents() -> None:
    shipped = (APP_DIR / "currencies.js").read_text()
    assert shipped == web_currencies.render()
    table = json.loads(re.search(r"Object\.freeze\((\{.*\})\)", shipped).group(1))  # type: ignore[union-attr]
    assert table == dict(money.currencies())


def test_the_web_app_is_on_by_default_and_can_be_turned_off() -> None:
    assert parse_config({}).web.enabled is True
    assert parse_config({"web": {"enabled": False}}).web.enabled is False


def test_browser_tests_skip_without_a_browser_but_fail_in_ci(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(browser.shutil, "which", lambda name: None)
    monkeypatch.setattr(browser.os.path, "exists", lambda path: False)
    assert browser.why_no_browser() == (
        "chromium and chromedriver are not installed (apt-get install chromium chromium-driver)"
    )
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception):
        require_browser()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception):
        require_browser()
