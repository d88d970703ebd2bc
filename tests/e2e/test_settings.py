"""GET and PUT /settings on a real homeserver: the token, the defaults, per-user updates, bad
changes that change nothing, and settings kept across a restart and on PostgreSQL."""

from __future__ import annotations

import pytest

from tests.harness.client import MatrixClient
from tests.harness.servers import TestHomeserver, start_all


def test_settings_requires_a_token(hs1):
    r = hs1.anonymous().laiwang_raw("GET", "/settings")
    assert r.status_code == 401
    assert r.json()["errcode"] == "M_MISSING_TOKEN"
    bad = MatrixClient(hs1.base_url, "", "not-a-token").laiwang_raw("GET", "/settings")
    assert (bad.status_code, bad.json()["errcode"]) == (401, "M_UNKNOWN_TOKEN")


def test_settings_defaults_and_update(hs1):
    alice = hs1.new_user("alice")
    assert alice.laiwang("GET", "/settings") == {
        "discoverable": True,
        "accept_requests_from": "address_book",
    }
    assert alice.laiwang("PUT", "/settings", {"accept_requests_from": "anyone"}) == {
        "discoverable": True,
        "accept_requests_from": "anyone",
    }
    # Settings are per user.
    assert hs1.new_user("bob").laiwang("GET", "/settings")["accept_requests_from"] == (
        "address_book"
    )


@pytest.mark.parametrize(
    "data, status, errcode",
    [
        (b"{not json", 400, "M_NOT_JSON"),
        (b"[]", 400, "M_BAD_JSON"),
        (b'{"discoverable": "yes"}', 400, "M_INVALID_PARAM"),
        (b'{"discoverable": false, "accept_requests_from": "strangers"}', 400, "M_INVALID_PARAM"),
        (b'{"discoverable": false, "surprise": 1}', 400, "M_INVALID_PARAM"),
        (b'{"discoverable": false, "pad": "' + b"x" * 70000 + b'"}', 413, "M_TOO_LARGE"),
    ],
)
def test_bad_settings_change_nothing(hs1, data, status, errcode):
    user = hs1.new_user()
    before = user.laiwang("GET", "/settings")
    r = user.laiwang_raw("PUT", "/settings", data=data)
    assert r.status_code == status
    body = r.json()
    assert body["errcode"] == errcode
    assert isinstance(body["error"], str) and "Traceback" not in body["error"]
    assert user.laiwang("GET", "/settings") == before


def test_settings_survive_restart(tmp_path):
    server = start_all([TestHomeserver(tmp_path / "restart")])[0]
    try:
        user = server.new_user("carol")
        user.laiwang("PUT", "/settings", {"discoverable": False, "accept_requests_from": "nobody"})
        server.restart()
        assert user.laiwang("GET", "/settings") == {
            "discoverable": False,
            "accept_requests_from": "nobody",
        }
    finally:
        server.stop()


@pytest.mark.postgres
def test_settings_on_postgres(pg_homeserver):
    user = pg_homeserver.new_user()
    assert user.laiwang("PUT", "/settings", {"discoverable": False})["discoverable"] is False
    assert user.laiwang("GET", "/settings")["discoverable"] is False
    r = user.laiwang_raw("PUT", "/settings", data=b"{")
    assert r.json()["errcode"] == "M_NOT_JSON"
