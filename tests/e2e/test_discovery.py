"""Phone numbers: binding through Synapse's own client API (the module as the msisdn delegate),
hashed discovery (MSC2134), its limits, and the address book it remembers.

Discovery is local: a lookup finds users of the server it is sent to (each homeserver indexes
its own users' numbers), so these tests run on one server at a time.
"""

from __future__ import annotations

import json
import re
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from rooms.discovery import lookup_hash
from tests.harness.client import MatrixClient, MatrixError, wait_until
from tests.harness.servers import TestHomeserver, start_all

CLIENT = "/_matrix/client/v3"
IDENTITY = "/_synapse/client/laiwang/identity"
DELEGATE_SECRET = "only-synapse-knows-this-0123"


def new_number() -> tuple[str, str]:
    """A fresh Chinese mobile number: (national form, msisdn)."""
    national = "138" + "".join(secrets.choice("0123456789") for _ in range(8))
    return national, "86" + national


def code_from_log(hs: TestHomeserver, sid: str) -> str:
    def find() -> str | None:
        m = re.search(rf"code (\d+) for session {re.escape(sid)} ", hs.process.log())
        return m.group(1) if m else None

    return wait_until(find, timeout=10)


def request_token(user: MatrixClient, national: str, secret: str, attempt: int = 1) -> dict:
    return user.call(
        "POST",
        f"{CLIENT}/account/3pid/msisdn/requestToken",
        {
            "client_secret": secret,
            "country": "CN",
            "phone_number": national,
            "send_attempt": attempt,
        },
    )


def submit_token(user: MatrixClient, secret: str, sid: str, token: str) -> dict:
    return user.call(
        "POST",
        "/_matrix/client/unstable/add_threepid/msisdn/submit_token",
        {"client_secret": secret, "sid": sid, "token": token},
    )


def add_threepid(user: MatrixClient, secret: str, sid: str) -> None:
    body: dict[str, Any] = {"client_secret": secret, "sid": sid}
    r = user.raw("POST", f"{CLIENT}/account/3pid/add", body)
    if r.status_code == 401:  # user-interactive auth: confirm with the password
        body["auth"] = {
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": user.user_id},
            "password": user.password,  # type: ignore[attr-defined]
            "session": r.json()["session"],
        }
        r = user.raw("POST", f"{CLIENT}/account/3pid/add", body)
    if r.status_code >= 400:
        raise MatrixError(r)


def bind_phone(hs: TestHomeserver, user: MatrixClient) -> str:
    """Bind a fresh number with the client API, as any client's "add phone" screen does."""
    national, msisdn = new_number()
    secret = secrets.token_hex(16)
    reply = request_token(user, national, secret)
    assert reply["msisdn"] == msisdn and reply["submit_url"]
    assert submit_token(user, secret, reply["sid"], code_from_log(hs, reply["sid"])) == {
        "success": True
    }
    add_threepid(user, secret, reply["sid"])
    return msisdn


def threepids(user: MatrixClient) -> list[dict]:
    return list(user.call("GET", f"{CLIENT}/account/3pid")["threepids"])


def pepper(user: MatrixClient) -> str:
    details = user.laiwang("GET", "/discovery/hash_details")
    assert details["algorithms"] == ["sha256"]
    assert re.fullmatch(r"[a-zA-Z0-9]+", details["lookup_pepper"])
    return str(details["lookup_pepper"])


def lookup(user: MatrixClient, msisdns: list[str], with_pepper: str | None = None) -> dict:
    p = with_pepper or pepper(user)
    body = {"algorithm": "sha256", "pepper": p, "addresses": [lookup_hash(m, p) for m in msisdns]}
    mappings = user.laiwang("POST", "/discovery/lookup", body)["mappings"]
    # Answer in numbers, not hashes, so the tests read plainly.
    return {m: mappings[lookup_hash(m, p)] for m in msisdns if lookup_hash(m, p) in mappings}


def sql(hs: TestHomeserver, query: str, *args: Any) -> list[tuple]:
    """Read the server's SQLite database (Synapse keeps running; reads do not block it)."""
    conn = sqlite3.connect(Path(hs.spec.directory) / "homeserver.db", timeout=30)
    try:
        return list(conn.execute(query, args))
    finally:
        conn.close()


def address_book(hs: TestHomeserver, owner_id: str) -> list[str]:
    rows = sql(
        hs, "SELECT contact_id FROM laiwang_address_book WHERE owner_id = ? ORDER BY 1", owner_id
    )
    return [r[0] for r in rows]


def usage(hs: TestHomeserver, user_id: str) -> int:
    rows = sql(hs, "SELECT SUM(addresses) FROM laiwang_discovery_usage WHERE user_id = ?", user_id)
    return int(rows[0][0] or 0)


def admin_set_msisdns(admin: MatrixClient, user_id: str, msisdns: list[str]) -> None:
    admin.call(
        "PUT",
        f"/_synapse/admin/v2/users/{quote(user_id)}",
        {"threepids": [{"medium": "msisdn", "address": m} for m in msisdns]},
    )


def test_bind_with_client_api_then_discover(hs1):
    alice, bob = hs1.new_user("alice"), hs1.new_user("bob")
    msisdn = bind_phone(hs1, alice)
    assert [(t["medium"], t["address"]) for t in threepids(alice)] == [("msisdn", msisdn)]
    _, unknown = new_number()
    assert lookup(bob, [msisdn, unknown]) == {msisdn: alice.user_id}
    # Bob looked Alice up: she is in his address book, not he in hers.
    assert address_book(hs1, bob.user_id) == [alice.user_id]
    assert address_book(hs1, alice.user_id) == []


def test_wrong_code_changes_nothing_and_attempts_are_limited(hs1):
    user = hs1.new_user()
    national, _ = new_number()
    secret = secrets.token_hex(16)
    sid = request_token(user, national, secret)["sid"]
    code = code_from_log(hs1, sid)
    wrong = "000000" if code != "000000" else "111111"
    reply = submit_token(user, secret, sid, wrong)
    assert reply["success"] is False
    with pytest.raises(MatrixError) as e:
        add_threepid(user, secret, sid)
    assert e.value.errcode == "M_THREEPID_AUTH_FAILED"
    assert threepids(user) == []
    # Five attempts by default: four more wrong codes use them up, then even the right one fails.
    for _ in range(4):
        assert submit_token(user, secret, sid, wrong)["success"] is False
    with pytest.raises(MatrixError):
        submit_token(user, secret, sid, code)
    with pytest.raises(MatrixError):
        add_threepid(user, secret, sid)
    assert threepids(user) == []


def test_resend_gives_a_new_code_for_the_same_session(hs1):
    user = hs1.new_user()
    national, msisdn = new_number()
    secret = secrets.token_hex(16)
    sid = request_token(user, national, secret, attempt=1)["sid"]
    first = code_from_log(hs1, sid)
    # Same send_attempt: no new SMS, same session.
    assert request_token(user, national, secret, attempt=1)["sid"] == sid
    assert len(re.findall(rf"for session {re.escape(sid)} ", hs1.process.log())) == 1
    assert request_token(user, national, secret, attempt=2)["sid"] == sid
    wait_until(lambda: len(re.findall(rf"for session {re.escape(sid)} ", hs1.process.log())) == 2)
    codes = re.findall(rf"code (\d+) for session {re.escape(sid)} ", hs1.process.log())
    if codes[-1] != first:
        assert submit_token(user, secret, sid, first)["success"] is False
    assert submit_token(user, secret, sid, codes[-1])["success"] is True
    add_threepid(user, secret, sid)
    assert [t["address"] for t in threepids(user)] == [msisdn]


def test_no_phone_number_in_the_clear_in_module_tables(hs1):
    user = hs1.new_user()
    msisdn = bind_phone(hs1, user)
    other = hs1.new_user()
    lookup(other, [msisdn])
    tables = [
        r[0]
        for r in sql(
            hs1, "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'laiwang_%'"
        )
    ]
    assert {"laiwang_msisdn_sessions", "laiwang_discovery_hashes", "laiwang_address_book"} <= set(
        tables
    )
    assert sql(hs1, "SELECT COUNT(*) FROM laiwang_msisdn_sessions")[0][0] > 0
    for table in tables:
        for row in sql(hs1, f"SELECT * FROM {table}"):
            assert all(msisdn[2:] not in str(v) for v in row), (table, row)


def test_admin_set_numbers_are_found_and_removal_hides_them(hs1):
    admin, carol, dave = hs1.new_user("admin", admin=True), hs1.new_user(), hs1.new_user()
    _, m1 = new_number()
    _, m2 = new_number()
    admin_set_msisdns(admin, carol.user_id, [m1, m2])
    assert lookup(dave, [m1, m2]) == {m1: carol.user_id, m2: carol.user_id}
    admin_set_msisdns(admin, carol.user_id, [m2])
    assert lookup(dave, [m1, m2]) == {m2: carol.user_id}
    # A number an admin wrote with '+' and spaces is normalised to E.164 before hashing.
    erin = hs1.new_user()
    _, m3 = new_number()
    admin_set_msisdns(admin, erin.user_id, [f"+{m3[:2]} {m3[2:5]} {m3[5:]}"])
    assert lookup(dave, [m3]) == {m3: erin.user_id}


def test_a_number_moved_to_another_account_finds_the_new_owner(hs1):
    admin, old, new, asker = (hs1.new_user("admin", admin=True), *[hs1.new_user() for _ in "abc"])
    _, m = new_number()
    admin_set_msisdns(admin, old.user_id, [m])
    assert lookup(asker, [m]) == {m: old.user_id}
    admin_set_msisdns(admin, old.user_id, [])
    admin_set_msisdns(admin, new.user_id, [m])
    assert lookup(asker, [m]) == {m: new.user_id}
    assert address_book(hs1, asker.user_id) == sorted([old.user_id, new.user_id])


def test_non_discoverable_users_are_hidden(hs1):
    admin, frank, grace = hs1.new_user("admin", admin=True), hs1.new_user(), hs1.new_user()
    _, m = new_number()
    admin_set_msisdns(admin, frank.user_id, [m])
    assert lookup(grace, [m]) == {m: frank.user_id}
    frank.laiwang("PUT", "/settings", {"discoverable": False})
    assert lookup(grace, [m]) == {}
    frank.laiwang("PUT", "/settings", {"discoverable": True})
    assert lookup(grace, [m]) == {m: frank.user_id}


def test_deactivated_users_are_not_found(hs1):
    admin, henry, ivy = hs1.new_user("admin", admin=True), hs1.new_user(), hs1.new_user()
    _, m = new_number()
    admin_set_msisdns(admin, henry.user_id, [m])
    assert lookup(ivy, [m]) == {m: henry.user_id}
    admin.call("POST", f"/_synapse/admin/v1/deactivate/{quote(henry.user_id)}", {})
    assert lookup(ivy, [m]) == {}


def test_stale_pepper_gets_the_current_one(hs1):
    user = hs1.new_user()
    current = pepper(user)
    r = user.laiwang_raw(
        "POST",
        "/discovery/lookup",
        {"algorithm": "sha256", "pepper": "stale" + current, "addresses": []},
    )
    assert r.status_code == 400
    body = r.json()
    assert body["errcode"] == "M_INVALID_PEPPER"
    assert body["algorithm"] == "sha256" and body["lookup_pepper"] == current


def test_discovery_requires_a_token(hs1):
    anon = hs1.anonymous()
    assert anon.laiwang_raw("GET", "/discovery/hash_details").status_code == 401
    r = anon.laiwang_raw("POST", "/discovery/lookup", {"algorithm": "sha256"})
    assert (r.status_code, r.json()["errcode"]) == (401, "M_MISSING_TOKEN")


GOOD = "A" * 43


@pytest.mark.parametrize(
    "data, status, errcode",
    [
        (b"{not json", 400, "M_NOT_JSON"),
        (b"[]", 400, "M_BAD_JSON"),
        (b'{"pepper": "P", "addresses": []}', 400, "M_MISSING_PARAM"),
        (b'{"algorithm": "md5", "pepper": "P", "addresses": []}', 400, "M_INVALID_PARAM"),
        (b'{"algorithm": "none", "pepper": "P", "addresses": []}', 400, "M_INVALID_PARAM"),
        (b'{"algorithm": 1, "pepper": "P", "addresses": []}', 400, "M_INVALID_PARAM"),
        (b'{"algorithm": "sha256", "pepper": 5, "addresses": []}', 400, "M_INVALID_PARAM"),
        (b'{"algorithm": "sha256", "pepper": "P", "addresses": "x"}', 400, "M_INVALID_PARAM"),
        (b'{"algorithm": "sha256", "pepper": "P", "addresses": [1]}', 400, "M_INVALID_PARAM"),
        (b'{"algorithm": "sha256", "pepper": "P", "addresses": ["short"]}', 400, "M_INVALID_PARAM"),
        (b'{"algorithm": "sha256", "pepper": "P"}', 400, "M_MISSING_PARAM"),
    ],
)
def test_bad_lookups_get_matrix_errors(hs1, data, status, errcode):
    user = hs1.new_user()
    r = user.laiwang_raw(
        "POST", "/discovery/lookup", data=data.replace(b'"P"', b'"%s"' % pepper(user).encode())
    )
    assert r.status_code == status, r.text
    assert r.json()["errcode"] == errcode
    assert usage(hs1, user.user_id) == 0


def test_oversize_and_refused_lookups_change_nothing(hs1):
    admin, target, user = hs1.new_user("admin", admin=True), hs1.new_user(), hs1.new_user()
    _, known = new_number()
    admin_set_msisdns(admin, target.user_id, [known])
    p = pepper(user)
    real = lookup_hash(known, p)
    fillers = [lookup_hash(f"8613{i:09d}", p) for i in range(1000)]
    cases = [
        # 1,001 addresses: over the default cap of 1,000 per request.
        ({"algorithm": "sha256", "pepper": p, "addresses": [real, *fillers]}, 429, None),
        # A body far beyond the size limit.
        ({"algorithm": "sha256", "pepper": p, "addresses": [real] * 3000}, 413, None),
        ({"algorithm": "sha512", "pepper": p, "addresses": [real]}, 400, "M_INVALID_PARAM"),
        (
            {"algorithm": "sha256", "pepper": "old" + p, "addresses": [real]},
            400,
            "M_INVALID_PEPPER",
        ),
        ({"algorithm": "sha256", "pepper": p, "addresses": [real, 5]}, 400, "M_INVALID_PARAM"),
    ]
    for body, status, errcode in cases:
        r = user.laiwang_raw("POST", "/discovery/lookup", body)
        assert r.status_code == status, r.text
        if errcode:
            assert r.json()["errcode"] == errcode
        if status == 429:
            assert r.json()["errcode"] == "M_LIMIT_EXCEEDED" and "retry_after_ms" in r.json()
        if status == 413:
            assert r.json()["errcode"] == "M_TOO_LARGE"
    assert usage(hs1, user.user_id) == 0
    assert address_book(hs1, user.user_id) == []
    # The same caller's valid lookup of exactly 1,000 addresses still works and is charged.
    assert lookup(user, [known], p) == {known: target.user_id}
    assert usage(hs1, user.user_id) == 1
    r = user.laiwang_raw(
        "POST", "/discovery/lookup", {"algorithm": "sha256", "pepper": p, "addresses": fillers}
    )
    assert r.status_code == 200 and usage(hs1, user.user_id) == 1001


@pytest.mark.parametrize(
    "body, errcode",
    [
        (
            {"client_secret": "s", "country": "CN", "phone_number": "12", "send_attempt": 1},
            "M_INVALID_PARAM",
        ),
        (
            {"client_secret": "s", "country": "CN", "phone_number": "hello", "send_attempt": 1},
            "M_INVALID_PARAM",
        ),
        (
            {
                "client_secret": "s",
                "country": "CHN",
                "phone_number": "13800000000",
                "send_attempt": 1,
            },
            "M_INVALID_PARAM",
        ),
        (
            {
                "client_secret": "s p",
                "country": "CN",
                "phone_number": "13800000000",
                "send_attempt": 1,
            },
            "M_INVALID_PARAM",
        ),
        (
            {
                "client_secret": "s",
                "country": "CN",
                "phone_number": "13800000000",
                "send_attempt": "1",
            },
            "M_INVALID_PARAM",
        ),
        ({"client_secret": "s", "country": "CN", "send_attempt": 1}, "M_MISSING_PARAM"),
    ],
)
def test_bad_token_requests_to_the_delegate(hs1, body, errcode):
    r = hs1.anonymous().raw(
        "POST",
        "/_synapse/client/laiwang/identity/_matrix/identity/api/v1/validate/msisdn/requestToken",
        body,
    )
    assert r.status_code == 400, r.text
    assert r.json()["errcode"] == errcode


def test_delegate_sessions_need_the_client_secret(hs1):
    anon = hs1.anonymous()
    base = "/_synapse/client/laiwang/identity/_matrix/identity/api/v1"
    national, _ = new_number()
    reply = anon.call(
        "POST",
        f"{base}/validate/msisdn/requestToken",
        {"client_secret": "right", "country": "CN", "phone_number": national, "send_attempt": 1},
    )
    sid = reply["sid"]
    code = code_from_log(hs1, sid)
    r = anon.raw(
        "POST",
        f"{base}/validate/msisdn/submitToken",
        {"sid": sid, "client_secret": "wrong", "token": code},
    )
    assert (r.status_code, r.json()["errcode"]) == (404, "M_NO_VALID_SESSION")
    r = anon.raw(
        "GET", f"{base}/3pid/getValidated3pid", params={"sid": sid, "client_secret": "right"}
    )
    assert (r.status_code, r.json()["errcode"]) == (400, "M_SESSION_NOT_VALIDATED")
    assert anon.call(
        "POST",
        f"{base}/validate/msisdn/submitToken",
        {"sid": sid, "client_secret": "right", "token": code},
    ) == {"success": True}
    r = anon.raw(
        "GET", f"{base}/3pid/getValidated3pid", params={"sid": sid, "client_secret": "wrong"}
    )
    assert r.status_code == 404
    got = anon.call(
        "GET", f"{base}/3pid/getValidated3pid", params={"sid": sid, "client_secret": "right"}
    )
    assert got["medium"] == "msisdn" and got["address"] == "86" + national
    r = anon.raw("POST", f"{base}/validate/msisdn/submitToken", data=b"{")
    assert r.json()["errcode"] == "M_NOT_JSON"


# --- servers with other settings: small limits, an HTTP SMS gateway, a fast pepper rotation ---


class SmsGateway:
    """A stand-in HTTP SMS gateway that records what the module posts to it."""

    def __init__(self) -> None:
        self.received: list[tuple[str | None, dict]] = []
        self.failing = False
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length))
                if gateway.failing:
                    self.send_response(503)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                gateway.received.append((self.headers.get("Authorization"), body))
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/send"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def code_for(self, msisdn: str) -> str:
        def find() -> str | None:
            for _, body in reversed(self.received):
                if body["to"] == "+" + msisdn:
                    return str(re.search(r"(\d{6})", body["text"]).group(1))  # type: ignore[union-attr]
            return None

        return wait_until(find, timeout=10)


@pytest.fixture(scope="module")
def gateway() -> Iterator[SmsGateway]:
    g = SmsGateway()
    yield g
    g.server.shutdown()


@pytest.fixture(scope="module")
def special(test_root, gateway) -> Iterator[tuple[TestHomeserver, TestHomeserver]]:
    limited = TestHomeserver(
        test_root / "hs-discovery-limits",
        module_config={
            "discovery": {"max_addresses_per_request": 5, "max_addresses_per_day": 12},
            "sms": {
                "sender": "http",
                "http": {"url": gateway.url, "bearer_token": "gateway-token"},
                "code_ttl": "3s",
                "max_per_number_per_day": 2,
                "delegate_secret": DELEGATE_SECRET,
                "message": "Laiwang: {code} is your code",
            },
        },
    )
    # Synapse is the only one that knows where the validation endpoints are.
    limited.spec.extra["account_threepid_delegates"] = {
        "msisdn": f"{limited.base_url}{IDENTITY}/{DELEGATE_SECRET}"
    }
    rotating = TestHomeserver(
        test_root / "hs-discovery-rotation",
        module_config={"discovery": {"pepper_rotation_period": "2s"}},
    )
    start_all([limited, rotating])
    yield limited, rotating
    limited.stop()
    rotating.stop()


def test_with_a_delegate_secret_only_synapse_reaches_the_endpoints(special, gateway):
    hs, _ = special
    body: dict[str, Any] = {"client_secret": "x", "country": "CN", "send_attempt": 1}
    body["phone_number"] = "13800138000"
    path = "/_matrix/identity/api/v1/validate/msisdn/requestToken"
    r = hs.anonymous().raw("POST", IDENTITY + path, body)
    assert (r.status_code, r.json()["errcode"]) == (404, "M_UNRECOGNIZED")
    r = hs.anonymous().raw("POST", f"{IDENTITY}/wrong{DELEGATE_SECRET}{path}", body)
    assert r.status_code == 404
    sent = len(gateway.received)
    r = hs.anonymous().raw("POST", f"{IDENTITY}/{DELEGATE_SECRET}{path}", {**body, "country": 1})
    assert (r.status_code, r.json()["errcode"]) == (400, "M_INVALID_PARAM")
    assert len(gateway.received) == sent
    # Through Synapse, binding works (the other tests on this server bind numbers too).
    user = hs.new_user()
    national, msisdn = new_number()
    sid = request_token(user, national, "s1")["sid"]
    assert submit_token(user, "s1", sid, gateway.code_for(msisdn))["success"] is True


def raw_lookup(user: MatrixClient, hashes: list[str], p: str) -> Any:
    return user.laiwang_raw(
        "POST", "/discovery/lookup", {"algorithm": "sha256", "pepper": p, "addresses": hashes}
    )


def test_per_request_cap_and_daily_budget(special):
    hs, _ = special
    admin, target, user = hs.new_user("admin", admin=True), hs.new_user(), hs.new_user()
    _, known = new_number()
    admin_set_msisdns(admin, target.user_id, [known])
    p = pepper(user)
    strangers = [lookup_hash(new_number()[1], p) for _ in range(12)]

    # Six addresses in one request: over the cap of five; nothing is charged or remembered.
    r = raw_lookup(user, [lookup_hash(known, p), *strangers[:5]], p)
    assert r.status_code == 429, r.text
    body = r.json()
    assert body["errcode"] == "M_LIMIT_EXCEEDED" and body["max_addresses_per_request"] == 5
    assert isinstance(body["retry_after_ms"], int)
    assert address_book(hs, user.user_id) == []

    # The daily budget is twelve addresses: 5 + 5 pass, 5 more do not, 2 more do.
    assert raw_lookup(user, strangers[:5], p).status_code == 200
    assert raw_lookup(user, strangers[5:10], p).status_code == 200
    r = raw_lookup(user, [lookup_hash(known, p), *strangers[:4]], p)
    assert r.status_code == 429
    body = r.json()
    assert body["errcode"] == "M_LIMIT_EXCEEDED"
    assert 0 < body["retry_after_ms"] <= 24 * 3600 * 1000
    assert address_book(hs, user.user_id) == []  # the refused lookup remembered nothing
    assert lookup(user, [known, new_number()[1]], p) == {known: target.user_id}
    assert address_book(hs, user.user_id) == [target.user_id]
    assert raw_lookup(user, strangers[:1], p).status_code == 429
    # The budget is per user.
    assert lookup(hs.new_user(), [known]) == {known: target.user_id}


def test_http_sms_gateway_receives_the_code(special, gateway):
    hs, _ = special
    user = hs.new_user()
    national, msisdn = new_number()
    secret = secrets.token_hex(8)
    sid = request_token(user, national, secret)["sid"]
    code = gateway.code_for(msisdn)
    auth, body = next((a, b) for a, b in gateway.received if b["to"] == "+" + msisdn)
    assert auth == "Bearer gateway-token"
    assert body["text"] == f"Laiwang: {code} is your code"
    assert submit_token(user, secret, sid, code)["success"] is True
    add_threepid(user, secret, sid)
    assert [t["address"] for t in threepids(user)] == [msisdn]
    assert f"code {code} for session" not in hs.process.log()  # the http sender does not log it


def test_a_failing_gateway_stores_nothing(special, gateway):
    hs, _ = special
    user = hs.new_user()
    national, msisdn = new_number()
    secret = secrets.token_hex(8)
    sessions_before = sql(hs, "SELECT COUNT(*) FROM laiwang_msisdn_sessions")[0][0]
    gateway.failing = True
    try:
        with pytest.raises(MatrixError) as e:
            request_token(user, national, secret)
        assert e.value.status >= 400
    finally:
        gateway.failing = False
    assert sql(hs, "SELECT COUNT(*) FROM laiwang_msisdn_sessions")[0][0] == sessions_before
    # The client tries again and it works.
    sid = request_token(user, national, secret, attempt=2)["sid"]
    assert submit_token(user, secret, sid, gateway.code_for(msisdn))["success"] is True


def test_sms_per_number_per_day_are_capped(special, gateway):
    hs, _ = special
    user = hs.new_user()
    national, msisdn = new_number()
    secret = secrets.token_hex(8)
    sid = request_token(user, national, secret, attempt=1)["sid"]
    assert request_token(user, national, secret, attempt=2)["sid"] == sid
    with pytest.raises(MatrixError) as e:
        request_token(user, national, secret, attempt=3)
    assert (e.value.status, e.value.errcode) == (429, "M_LIMIT_EXCEEDED")
    with pytest.raises(MatrixError):  # another client secret: still the same number
        request_token(hs.new_user(), national, secrets.token_hex(8))
    assert len([b for _, b in gateway.received if b["to"] == "+" + msisdn]) == 2


def test_codes_expire(special, gateway):
    hs, _ = special
    user = hs.new_user()
    national, msisdn = new_number()
    secret = secrets.token_hex(8)
    sid = request_token(user, national, secret)["sid"]
    code = gateway.code_for(msisdn)
    time.sleep(3.5)  # past code_ttl (3s): waiting for expiry, not measuring speed
    base = f"{IDENTITY}/{DELEGATE_SECRET}/_matrix/identity/api/v1"
    r = hs.anonymous().raw(
        "POST",
        f"{base}/validate/msisdn/submitToken",
        {"sid": sid, "client_secret": secret, "token": code},
    )
    assert (r.status_code, r.json()["errcode"]) == (400, "M_SESSION_EXPIRED")
    with pytest.raises(MatrixError):
        add_threepid(user, secret, sid)
    assert threepids(user) == []


def test_pepper_rotates_and_the_old_one_is_refused(special):
    _, hs = special
    admin, target, user = hs.new_user("admin", admin=True), hs.new_user(), hs.new_user()
    _, known = new_number()
    admin_set_msisdns(admin, target.user_id, [known])
    first = pepper(user)
    wait_until(lambda: pepper(user) != first, timeout=60)
    r = raw_lookup(user, [lookup_hash(known, first)], first)
    assert r.status_code == 400
    body = r.json()
    assert body["errcode"] == "M_INVALID_PEPPER" and body["algorithm"] == "sha256"
    assert body["lookup_pepper"] != first

    # With the pepper it was given, a client finds the user (the index was rebuilt for it);
    # the pepper may rotate again meanwhile, so retry as a client would.
    def found() -> bool:
        p = pepper(user)
        r = raw_lookup(user, [lookup_hash(known, p)], p)
        if r.status_code == 400 and r.json()["errcode"] == "M_INVALID_PEPPER":
            return False
        assert r.status_code == 200, r.text
        return bool(r.json()["mappings"] == {lookup_hash(known, p): target.user_id})

    assert wait_until(found, timeout=30)

    # Removed while the index is rebuilt every two seconds: it stays removed across rotations.
    admin_set_msisdns(admin, target.user_id, [])
    seen: set[str] = set()
    while len(seen) < 3:
        p = pepper(user)
        r = raw_lookup(user, [lookup_hash(known, p)], p)
        if r.status_code == 200:
            assert r.json()["mappings"] == {}
            seen.add(p)


@pytest.mark.postgres
def test_bind_and_discover_on_postgres(pg_homeserver):
    hs = pg_homeserver
    alice, bob, admin = hs.new_user("alice"), hs.new_user("bob"), hs.new_user("a", admin=True)
    msisdn = bind_phone(hs, alice)
    _, other = new_number()
    admin_set_msisdns(admin, bob.user_id, [other])
    carol = hs.new_user("carol")
    assert lookup(carol, [msisdn, other, new_number()[1]]) == {
        msisdn: alice.user_id,
        other: bob.user_id,
    }
    # Looked up twice: merged, not duplicated.
    assert lookup(carol, [msisdn]) == {msisdn: alice.user_id}
    bob.laiwang("PUT", "/settings", {"discoverable": False})
    assert lookup(carol, [msisdn, other]) == {msisdn: alice.user_id}
    r = carol.laiwang_raw("POST", "/discovery/lookup", data=b"{")
    assert r.json()["errcode"] == "M_NOT_JSON"


@pytest.mark.postgres
def test_discovery_through_a_worker_shares_pepper_index_and_budget(worker_homeserver):
    """Lookups on a generic worker: same pepper, same index (3pids set on the main process),
    and one daily budget for both processes (kept in the database)."""
    main, worker = worker_homeserver
    admin, target, asker = main.new_user("a", admin=True), main.new_user(), main.new_user()
    asker_w = MatrixClient(worker.base_url, asker.user_id, asker.access_token)
    _, m = new_number()
    admin_set_msisdns(admin, target.user_id, [m])
    p = pepper(asker)
    assert pepper(asker_w) == p
    assert lookup(asker_w, [m], p) == {m: target.user_id}

    fillers = [lookup_hash(f"8615{i:09d}", p) for i in range(1000)]
    spent = 1  # the lookup above
    for i in range(9):
        who = asker_w if i % 2 else asker
        r = raw_lookup(who, fillers[: 1000 if i < 8 else 999], p)
        assert r.status_code == 200, r.text
        spent += 1000 if i < 8 else 999
    assert spent == 9000
    r = raw_lookup(asker, fillers, p)  # 10,000 would be reached exactly: allowed
    assert r.status_code == 200
    for who in (asker, asker_w):
        r = raw_lookup(who, fillers[:1], p)
        assert (r.status_code, r.json()["errcode"]) == (429, "M_LIMIT_EXCEEDED")
