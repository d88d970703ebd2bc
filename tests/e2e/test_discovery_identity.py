"""Discovery through the standard Identity Service API v2 at the homeserver's own base URL
(`/_matrix/identity/v2`): what a client whose identity server is the homeserver does (Element's
"Discovery" settings and invite dialog). Lookups there are the same as `/discovery/lookup`."""

from __future__ import annotations

import pytest
import requests

from rooms.discovery import lookup_hash
from tests.harness.client import MatrixClient
from tests.harness.discovery import (
    IDENTITY,
    identity_client,
    identity_lookup,
    lookup,
    openid_token,
    pepper,
)
from tests.harness.msisdn import admin_set_msisdns, new_number
from tests.harness.servers import TestHomeserver, execute, sql


def usage(hs: TestHomeserver, user_id: str) -> int:
    rows = sql(hs, "SELECT SUM(addresses) FROM laiwang_discovery_usage WHERE user_id = ?", user_id)
    return int(rows[0][0] or 0)


def address_book(hs: TestHomeserver, owner_id: str) -> list[str]:
    rows = sql(
        hs, "SELECT contact_id FROM laiwang_address_book WHERE owner_id = ? ORDER BY 1", owner_id
    )
    return [r[0] for r in rows]


def error(r: requests.Response) -> tuple[int, str]:
    return r.status_code, r.json()["errcode"]


def test_well_known_names_the_homeserver_as_identity_server(hs1):
    r = requests.get(hs1.base_url + "/.well-known/matrix/client", timeout=30)
    assert r.status_code == 200
    assert r.json()["m.identity_server"]["base_url"].rstrip("/") == hs1.base_url


def test_status_versions_and_terms_need_no_token(hs1):
    anon = hs1.anonymous()
    assert anon.call("GET", IDENTITY) == {}
    assert "v1.1" in anon.call("GET", "/_matrix/identity/versions")["versions"]
    assert anon.call("GET", f"{IDENTITY}/terms") == {"policies": {}}


def test_register_then_find_discoverable_users_and_not_hidden_ones(hs1):
    admin = hs1.new_user("admin", admin=True)
    alice, hidden, bob = hs1.new_user("alice"), hs1.new_user("hidden"), hs1.new_user("bob")
    _, m_alice = new_number()
    _, m_hidden = new_number()
    _, m_nobody = new_number()
    admin_set_msisdns(admin, alice.user_id, [m_alice])
    admin_set_msisdns(admin, hidden.user_id, [m_hidden])
    hidden.laiwang("PUT", "/settings", {"discoverable": False})

    identity = identity_client(bob)
    assert identity.call("GET", f"{IDENTITY}/account") == {"user_id": bob.user_id}
    details = identity.call("GET", f"{IDENTITY}/hash_details")
    assert details == {"algorithms": ["sha256"], "lookup_pepper": pepper(bob)}
    assert identity_lookup(identity, [m_alice, m_hidden, m_nobody]) == {m_alice: alice.user_id}
    # The same address book as /discovery/lookup: both found users, hidden or not.
    assert address_book(hs1, bob.user_id) == sorted([alice.user_id, hidden.user_id])
    assert identity.call("POST", f"{IDENTITY}/terms", {"user_accepts": []}) == {}


def test_budget_is_shared_with_the_laiwang_endpoint(hs1):
    bob = hs1.new_user("bob")
    identity = identity_client(bob)
    numbers = [new_number()[1] for _ in range(3)]
    identity_lookup(identity, numbers)
    assert usage(hs1, bob.user_id) == 3
    lookup(bob, numbers[:2])
    assert usage(hs1, bob.user_id) == 5
    # The per-request cap is the same rule, with the same answer.
    p = pepper(bob)
    # 1,001 distinct numbers (1,001 random ones repeat one about once in 200 runs: 1,000 then).
    over = [lookup_hash(f"86139{i:08d}", p) for i in range(1001)]
    r = identity.raw(
        "POST", f"{IDENTITY}/lookup", {"algorithm": "sha256", "pepper": p, "addresses": over}
    )
    assert error(r) == (429, "M_LIMIT_EXCEEDED")
    assert r.json()["max_addresses_per_request"] == 1000
    assert usage(hs1, bob.user_id) == 5


def test_stale_pepper_and_bad_algorithm(hs1):
    identity = identity_client(hs1.new_user())
    current = identity.call("GET", f"{IDENTITY}/hash_details")["lookup_pepper"]
    body = {"algorithm": "sha256", "pepper": "x" + current, "addresses": []}
    r = identity.raw("POST", f"{IDENTITY}/lookup", body)
    assert error(r) == (400, "M_INVALID_PEPPER")
    assert r.json()["lookup_pepper"] == current
    r = identity.raw("POST", f"{IDENTITY}/lookup", {**body, "algorithm": "none"})
    assert error(r) == (400, "M_INVALID_PARAM")


def test_missing_unknown_and_logged_out_tokens_are_unauthorized(hs1):
    user = hs1.new_user()
    anon = hs1.anonymous()
    for method, path in [
        ("GET", "/account"),
        ("GET", "/hash_details"),
        ("POST", "/lookup"),
        ("POST", "/account/logout"),
        ("POST", "/terms"),
    ]:
        assert error(anon.raw(method, IDENTITY + path, {})) == (401, "M_UNAUTHORIZED")
    bogus = MatrixClient(hs1.base_url, "", "not-a-token")
    assert error(bogus.raw("GET", f"{IDENTITY}/account")) == (401, "M_UNAUTHORIZED")
    # The homeserver's own access token is not an identity server token.
    assert error(user.raw("GET", f"{IDENTITY}/account")) == (401, "M_UNAUTHORIZED")

    identity = identity_client(user)
    token = identity.access_token
    # The deprecated query parameter works too.
    assert anon.call("GET", f"{IDENTITY}/account", params={"access_token": token}) == {
        "user_id": user.user_id
    }
    assert identity.call("POST", f"{IDENTITY}/account/logout", {}) == {}
    assert error(identity.raw("GET", f"{IDENTITY}/account")) == (401, "M_UNAUTHORIZED")
    # Only a hash of the token is stored.
    assert sql(hs1, "SELECT COUNT(*) FROM laiwang_identity_tokens WHERE token_hash = ?", token) == [
        (0,)
    ]


def test_bad_expired_and_foreign_openid_tokens(hs1, hs2):
    user = hs1.new_user()
    anon = hs1.anonymous()
    register = f"{IDENTITY}/account/register"
    good = openid_token(user)
    assert good["matrix_server_name"] == hs1.server_name and good["token_type"] == "Bearer"

    assert error(anon.raw("POST", register, {**good, "access_token": "nope"})) == (
        401,
        "M_UNAUTHORIZED",
    )
    # A token of another homeserver (hs2's, for hs2's user) is refused.
    foreign = openid_token(hs2.new_user())
    assert error(anon.raw("POST", register, foreign)) == (403, "M_FORBIDDEN")
    # ... and so is this server's token claimed for another server.
    assert error(anon.raw("POST", register, {**good, "matrix_server_name": "example.org"})) == (
        403,
        "M_FORBIDDEN",
    )
    assert error(anon.raw("POST", register, {**good, "token_type": "Mac"})) == (
        400,
        "M_INVALID_PARAM",
    )
    missing = {k: v for k, v in good.items() if k != "access_token"}
    assert error(anon.raw("POST", register, missing)) == (400, "M_MISSING_PARAM")
    assert error(anon.raw("POST", register, data=b"[")) == (400, "M_NOT_JSON")

    expired = openid_token(user)
    execute(
        hs1,
        "UPDATE open_id_tokens SET ts_valid_until_ms = 1 WHERE token = ?",
        expired["access_token"],
    )
    assert error(anon.raw("POST", register, expired)) == (401, "M_UNAUTHORIZED")
    # The good one still works.
    assert anon.call("POST", register, good)["token"]


@pytest.mark.parametrize(
    "method, path",
    [
        ("POST", "/validate/msisdn/requestToken"),
        ("POST", "/validate/email/requestToken"),
        ("GET", "/validate/msisdn/submitToken"),
        ("POST", "/3pid/bind"),
        ("POST", "/3pid/unbind"),
        ("GET", "/3pid/getValidated3pid"),
        ("POST", "/store-invite"),
        ("POST", "/sign-ed25519"),
        ("GET", "/pubkey/ed25519:0"),
    ],
)
def test_unsupported_identity_endpoints_are_unrecognized(hs1, method, path):
    identity = identity_client(hs1.new_user())
    assert error(identity.raw(method, IDENTITY + path, {})) == (404, "M_UNRECOGNIZED")


def test_deactivation_ends_identity_sessions(hs1):
    admin, user = hs1.new_user("admin", admin=True), hs1.new_user()
    identity = identity_client(user)
    admin.call("POST", f"/_synapse/admin/v1/deactivate/{user.user_id}", {})
    assert error(identity.raw("GET", f"{IDENTITY}/account")) == (401, "M_UNAUTHORIZED")
