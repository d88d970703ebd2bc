"""Discovery across servers (`discovery.peers`): a user of server A finds, by number, the
discoverable users of its peer B (an oblivious-PRF set intersection: no number or reversible
hash leaves A), not hidden ones, and nobody on a server that is not a peer; both ends apply
their limits; a peer that is down or silent costs at most `discovery.peer_timeout`."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from rooms.discovery import lookup_hash
from tests.harness.client import MatrixClient, MatrixError, wait_until
from tests.harness.discovery import identity_client, identity_lookup, pepper
from tests.harness.msisdn import admin_set_msisdns, new_number
from tests.harness.servers import TestHomeserver, module_tables, sql, start_all

pytestmark = pytest.mark.federation

PEER_TIMEOUT_S = 2


class SilentPeer:
    """A TCP port that accepts connections and never answers (a hung server)."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.held: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(conn)

    def close(self) -> None:
        self.sock.close()
        for conn in self.held:
            conn.close()


@pytest.fixture(scope="module")
def peers(test_root) -> Iterator[tuple[TestHomeserver, TestHomeserver, str, str]]:
    """A (peers: B, a dead port, a silent port) and B (peers: A; small daily budget)."""
    silent = SilentPeer()
    dead = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    dead.bind(("127.0.0.1", 0))
    dead_name = f"localhost:{dead.getsockname()[1]}"
    dead.close()  # nothing listens there now
    silent_name = f"localhost:{silent.port}"
    a = TestHomeserver(test_root / "hs-peer-a", federation=True)
    b = TestHomeserver(test_root / "hs-peer-b", federation=True)
    a.spec.module_config = {
        "discovery": {
            "peers": [b.server_name, dead_name, silent_name],
            "peer_timeout": f"{PEER_TIMEOUT_S}s",
            # Numbers added on B are found once A fetches B's set again.
            "peer_set_ttl": "1s",
            "max_addresses_per_request": 10,
        }
    }
    b.spec.module_config = {"discovery": {"peers": [a.server_name], "max_addresses_per_day": 8}}
    start_all([a, b])
    yield a, b, dead_name, silent_name
    a.stop()
    b.stop()
    silent.close()


def peer_lookup(user: MatrixClient, msisdns: list[str]) -> tuple[dict[str, str], set[str]]:
    """A lookup answered in numbers, with the peers that were not reached."""
    p = pepper(user)
    body = {"algorithm": "sha256", "pepper": p, "addresses": [lookup_hash(m, p) for m in msisdns]}
    reply = user.laiwang("POST", "/discovery/lookup", body)
    mappings = reply["mappings"]
    found = {m: mappings[lookup_hash(m, p)] for m in msisdns if lookup_hash(m, p) in mappings}
    return found, set(reply["unreachable_peers"])


def usage(hs: TestHomeserver, key: str) -> int:
    rows = sql(hs, "SELECT SUM(addresses) FROM laiwang_discovery_usage WHERE user_id = ?", key)
    return int(rows[0][0] or 0)


def numbered_user(hs: TestHomeserver, admin: MatrixClient, name: str) -> tuple[MatrixClient, str]:
    user = hs.new_user(name)
    _, msisdn = new_number()
    admin_set_msisdns(admin, user.user_id, [msisdn])
    return user, msisdn


def find_on_peer(user: MatrixClient, msisdns: list[str], expect: dict[str, str]) -> set[str]:
    """Look up until B answers (it builds its set for A's pepper when first asked)."""

    def found() -> set[str] | None:
        mappings, unreachable = peer_lookup(user, msisdns)
        return unreachable if mappings == expect else None

    return wait_until(found, timeout=60, interval=1)


def test_a_user_finds_discoverable_users_of_a_peer_and_not_hidden_ones(peers):
    a, b, dead, silent = peers
    admin_b = b.new_user("admin", admin=True)
    bob, m_bob = numbered_user(b, admin_b, "bob")
    hidden, m_hidden = numbered_user(b, admin_b, "hidden")
    hidden.laiwang("PUT", "/settings", {"discoverable": False})
    alice = a.new_user("alice")
    _, m_nobody = new_number()

    unreachable = find_on_peer(alice, [m_bob, m_hidden, m_nobody], {m_bob: bob.user_id})
    # The dead and the silent peer are named; B answered.
    assert unreachable == {dead, silent}
    # Found on B through A: in Alice's address book on A (hidden users are not revealed).
    book = sql(a, "SELECT contact_id FROM laiwang_address_book WHERE owner_id = ?", alice.user_id)
    assert book == [(bob.user_id,)]
    # B charged Alice and her server for what it evaluated; it holds no number of A's.
    assert usage(b, alice.user_id) >= 3 and usage(b, a.server_name) >= 3
    for table in module_tables(b):
        for row in sql(b, f"SELECT * FROM {table}"):
            assert all(m_nobody[2:] not in str(v) for v in row), (table, row)


def test_a_down_or_silent_peer_costs_at_most_the_timeout(peers):
    a, b, dead, silent = peers
    admin_b = b.new_user("admin", admin=True)
    bob, m_bob = numbered_user(b, admin_b, "bob")
    alice = a.new_user("alice")
    find_on_peer(alice, [m_bob], {m_bob: bob.user_id})
    started = time.monotonic()
    mappings, unreachable = peer_lookup(alice, [m_bob])
    elapsed = time.monotonic() - started
    assert mappings == {m_bob: bob.user_id} and unreachable == {dead, silent}
    assert elapsed < PEER_TIMEOUT_S + 2, elapsed


def test_the_identity_api_finds_peer_users_too(peers):
    a, b, _, _ = peers
    bob, m_bob = numbered_user(b, b.new_user("admin", admin=True), "bob")
    identity = identity_client(a.new_user("alice"))
    assert wait_until(lambda: identity_lookup(identity, [m_bob]), timeout=60, interval=1) == {
        m_bob: bob.user_id
    }


def test_a_found_peer_user_may_ask_under_address_book(peers):
    a, b, _, _ = peers
    admin_b = b.new_user("admin", admin=True)
    bob, m_bob = numbered_user(b, admin_b, "bob")
    carol = b.new_user("carol")
    alice = a.new_user("alice")  # accept_requests_from: address_book (the default)
    find_on_peer(alice, [m_bob], {m_bob: bob.user_id})
    # Bob's number is in Alice's book: his request reaches her; Carol's is refused.
    room = bob.laiwang("POST", "/contacts/requests", {"user_id": alice.user_id})["room_id"]
    wait_until(lambda: room in alice.invited_rooms(), timeout=60)
    with pytest.raises(MatrixError) as e:
        carol.laiwang("POST", "/contacts/requests", {"user_id": alice.user_id})
    assert e.value.status == 403
    # ... and Bob is suggested to Alice.
    suggestions = alice.laiwang("GET", "/contacts/suggestions")
    assert bob.user_id in str(suggestions)


def test_a_server_that_is_not_a_peer_is_not_asked(peers, hs1):
    a, _, _, _ = peers
    carol, m_carol = numbered_user(hs1, hs1.new_user("admin", admin=True), "carol")
    alice = a.new_user("alice")
    mappings, _ = peer_lookup(alice, [m_carol])
    assert mappings == {}
    assert usage(hs1, alice.user_id) == 0 and usage(hs1, a.server_name) == 0


def test_stale_pepper_and_over_cap_ask_no_peer(peers):
    a, b, _, _ = peers
    alice = a.new_user("alice")
    p = pepper(alice)
    hashes = [lookup_hash(new_number()[1], p) for _ in range(11)]
    stale = alice.laiwang_raw(
        "POST",
        "/discovery/lookup",
        {"algorithm": "sha256", "pepper": "x" + p, "addresses": hashes[:1]},
    )
    assert (stale.status_code, stale.json()["errcode"]) == (400, "M_INVALID_PEPPER")
    over = alice.laiwang_raw(
        "POST", "/discovery/lookup", {"algorithm": "sha256", "pepper": p, "addresses": hashes}
    )
    assert (over.status_code, over.json()["errcode"]) == (429, "M_LIMIT_EXCEEDED")
    assert over.json()["max_addresses_per_request"] == 10
    assert usage(a, alice.user_id) == 0 and usage(b, alice.user_id) == 0


def test_the_peer_applies_its_own_daily_budget(peers):
    a, b, _, silent = peers
    admin_b = b.new_user("admin", admin=True)
    bob, m_bob = numbered_user(b, admin_b, "bob")
    alice = a.new_user("alice")
    find_on_peer(alice, [m_bob], {m_bob: bob.user_id})
    spent = usage(b, alice.user_id)
    # B allows 8 a day per remote user: A's budget (10,000) is not the limit there.
    fillers = [new_number()[1] for _ in range(8 - spent)]
    mappings, unreachable = peer_lookup(alice, fillers)
    assert b.server_name not in unreachable and usage(b, alice.user_id) == 8
    # A number A has not had evaluated yet (A remembers the values it learned: Bob's costs
    # nothing again, and reveals nothing new).
    erin, m_erin = numbered_user(b, admin_b, "erin")
    mappings, unreachable = peer_lookup(alice, [m_erin])
    assert mappings == {} and b.server_name in unreachable
    assert usage(b, alice.user_id) == 8
    assert peer_lookup(alice, [m_bob])[0] == {m_bob: bob.user_id}
    # Another user of A still finds Erin.
    find_on_peer(a.new_user("dave"), [m_erin], {m_erin: erin.user_id})


def test_unsigned_or_non_peer_requests_are_refused(peers, hs1):
    _, b, _, _ = peers
    anon = b.anonymous()
    r = anon.laiwang_raw("GET", "/federation/discovery/set", params={"pepper": "abc"})
    assert (r.status_code, r.json()["errcode"]) == (401, "M_UNAUTHORIZED")
    r = anon.laiwang_raw(
        "POST", "/federation/discovery/evaluate", {"user_id": "@a:x", "pepper": "a", "elements": []}
    )
    assert (r.status_code, r.json()["errcode"]) == (401, "M_UNAUTHORIZED")
