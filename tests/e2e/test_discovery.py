"""Hashed phone-book discovery (MSC2134): lookups and their limits, the pepper and its
rotation, and the address book that lookups remember. Binding a number (the msisdn delegate,
SMS codes) is in test_msisdn.py.

Discovery is local: a lookup finds users of the server it is sent to (each homeserver indexes
its own users' numbers), so these tests run on one server at a time.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest

from rooms.discovery import lookup_hash
from tests.harness.client import MatrixClient, wait_until
from tests.harness.discovery import lookup, pepper
from tests.harness.msisdn import admin_set_msisdns, bind_phone, new_number, threepids
from tests.harness.servers import TestHomeserver, module_tables, sql, start_all


def address_book(hs: TestHomeserver, owner_id: str) -> list[str]:
    rows = sql(
        hs, "SELECT contact_id FROM laiwang_address_book WHERE owner_id = ? ORDER BY 1", owner_id
    )
    return [r[0] for r in rows]


def usage(hs: TestHomeserver, user_id: str) -> int:
    rows = sql(hs, "SELECT SUM(addresses) FROM laiwang_discovery_usage WHERE user_id = ?", user_id)
    return int(rows[0][0] or 0)


def test_bind_with_client_api_then_discover(hs1):
    alice, bob = hs1.new_user("alice"), hs1.new_user("bob")
    msisdn = bind_phone(hs1, alice)
    assert [(t["medium"], t["address"]) for t in threepids(alice)] == [("msisdn", msisdn)]
    _, unknown = new_number()
    assert lookup(bob, [msisdn, unknown]) == {msisdn: alice.user_id}
    # Bob looked Alice up: she is in his address book, not he in hers.
    assert address_book(hs1, bob.user_id) == [alice.user_id]
    assert address_book(hs1, alice.user_id) == []


def test_no_phone_number_in_the_clear_in_module_tables(hs1):
    user = hs1.new_user()
    msisdn = bind_phone(hs1, user)
    other = hs1.new_user()
    lookup(other, [msisdn])
    tables = module_tables(hs1)
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
    # Issue 11: removing the number from `old` forgot the entry it made (it used to stay for
    # the TTL); the new owner's entry is there.
    assert address_book(hs1, asker.user_id) == [new.user_id]


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
    r = anon.laiwang_raw("GET", "/discovery/hash_details")
    assert (r.status_code, r.json()["errcode"]) == (401, "M_MISSING_TOKEN")
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
        (
            {"algorithm": "sha256", "pepper": p, "addresses": [real, *fillers]},
            429,
            "M_LIMIT_EXCEEDED",
        ),
        # A body far beyond the size limit.
        ({"algorithm": "sha256", "pepper": p, "addresses": [real] * 3000}, 413, "M_TOO_LARGE"),
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
        assert (r.status_code, r.json()["errcode"]) == (status, errcode), r.text
        if status == 429:
            assert r.json()["retry_after_ms"] == 0  # split the request: no need to wait
    assert usage(hs1, user.user_id) == 0
    assert address_book(hs1, user.user_id) == []
    # The same caller's valid lookup of exactly 1,000 addresses still works and is charged.
    assert lookup(user, [known], p) == {known: target.user_id}
    assert usage(hs1, user.user_id) == 1
    r = user.laiwang_raw(
        "POST", "/discovery/lookup", {"algorithm": "sha256", "pepper": p, "addresses": fillers}
    )
    assert r.status_code == 200 and usage(hs1, user.user_id) == 1001


# --- servers with other settings: small limits, a fast pepper rotation ---


@pytest.fixture(scope="module")
def special(test_root) -> Iterator[tuple[TestHomeserver, TestHomeserver]]:
    limited = TestHomeserver(
        test_root / "hs-discovery-limits",
        module_config={
            "discovery": {"max_addresses_per_request": 5, "max_addresses_per_day": 12},
        },
    )
    rotating = TestHomeserver(
        test_root / "hs-discovery-rotation",
        module_config={"discovery": {"pepper_rotation_period": "2s", "address_book_ttl": "3s"}},
    )
    start_all([limited, rotating])
    yield limited, rotating
    limited.stop()
    rotating.stop()


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
    r = raw_lookup(user, strangers[:1], p)
    assert (r.status_code, r.json()["errcode"]) == (429, "M_LIMIT_EXCEEDED")
    # The budget is per user.
    assert lookup(hs.new_user(), [known]) == {known: target.user_id}


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


def test_address_book_entries_expire(special):
    _, hs = special  # address_book_ttl: 3s; the job runs every second
    admin, target, owner = hs.new_user("admin", admin=True), hs.new_user(), hs.new_user()
    _, known = new_number()
    admin_set_msisdns(admin, target.user_id, [known])

    def looked_up() -> bool:
        p = pepper(owner)  # the pepper rotates every two seconds: retry as a client would
        r = raw_lookup(owner, [lookup_hash(known, p)], p)
        return r.status_code == 200 and r.json()["mappings"] == {
            lookup_hash(known, p): target.user_id
        }

    assert wait_until(looked_up, timeout=30)
    assert address_book(hs, owner.user_id) == [target.user_id]
    # Gone from the table (not only ignored by reads) once the TTL has passed.
    wait_until(lambda: address_book(hs, owner.user_id) == [], timeout=15)


def test_a_hidden_hit_and_a_miss_look_the_same_and_both_are_charged(hs1):
    admin, hidden, asker = hs1.new_user("admin", admin=True), hs1.new_user(), hs1.new_user()
    _, number = new_number()
    _, unknown = new_number()
    admin_set_msisdns(admin, hidden.user_id, [number])
    hidden.laiwang("PUT", "/settings", {"discoverable": False})
    p = pepper(asker)
    hit = raw_lookup(asker, [lookup_hash(number, p)], p)
    miss = raw_lookup(asker, [lookup_hash(unknown, p)], p)
    assert (
        (hit.status_code, hit.json()) == (miss.status_code, miss.json()) == (200, {"mappings": {}})
    )
    assert usage(hs1, asker.user_id) == 2


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
