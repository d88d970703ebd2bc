"""An outage among three servers: C is killed (kill -9) while users of A and B join a cluster
C's user is in, pay and close bills in a room with C's user, post, and make and end
acquaintances. Once C is back, its AA ledger, acquaintance index, cluster tree and feed must
match A's and B's, from the rooms alone (federation catch-up, the module's checks and upkeep)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_aa import ask, path
from tests.e2e.test_clusters import join_by_asking, shape, tree
from tests.harness.client import MatrixClient, wait_until
from tests.harness.servers import TestHomeserver, sql, start_again, start_all
from tests.harness.social import make_acquainted

pytestmark = pytest.mark.federation


@pytest.fixture(scope="module")
def three(test_root: Path) -> Iterator[list[TestHomeserver]]:
    servers = start_all(
        [TestHomeserver(test_root / f"hs-three-{n}", federation=True) for n in "abc"]
    )
    yield servers
    for s in servers:
        s.stop()


def feed(user: MatrixClient) -> list[str]:
    return [c["event_id"] for c in user.laiwang("GET", "/feed")["chunk"]]


def acquaintances(hs: TestHomeserver, users: list[str]) -> list[tuple]:
    """The server's index of the acquaintances among `users`."""
    rows = sql(hs, "SELECT user_id, other_id, room_id FROM laiwang_acquaintances")
    return sorted(r for r in rows if r[0] in users and r[1] in users)


def ledger(hs: TestHomeserver, room: str) -> dict[str, Any]:
    return {
        "requests": sql(hs, "SELECT event_id, payee, total, state FROM laiwang_aa_requests"
                        " WHERE room_id = ? ORDER BY event_id", room),
        "shares": sql(hs, "SELECT s.request_event_id, s.user_id, s.amount, s.paid,"
                      " s.payment_event_id FROM laiwang_aa_shares s JOIN laiwang_aa_requests r"
                      " ON r.event_id = s.request_event_id WHERE r.room_id = ?"
                      " ORDER BY s.request_event_id, s.user_id", room),
    }  # fmt: skip


def members(hs: TestHomeserver, cluster: str) -> list[tuple]:
    return sorted(
        sql(hs, "SELECT user_id, membership, invited_by FROM laiwang_cluster_members"
            " WHERE room_id = ?", cluster)
    )  # fmt: skip


def test_a_server_back_from_an_outage_matches_the_others(three):
    a, b, c = three
    a1, b1, b2, b3, c1 = (a.new_user("a1"), b.new_user("b1"), b.new_user("b2"),
                          b.new_user("b3"), c.new_user("c1"))  # fmt: skip
    everyone = [u.user_id for u in (a1, b1, b2, b3, c1)]
    c_b1 = make_acquainted(c1, b1)
    for other in (b1, c1, b2):
        make_acquainted(a1, other)
    timeline = a1.laiwang("GET", "/timeline")["room_id"]
    wait_until(lambda: c1.membership(timeline, c1.user_id) == "join", timeout=60)
    cluster = a1.laiwang("POST", "/clusters", {"topic": "Outage", "invite": [b1.user_id,
                                                                             c1.user_id]})["room_id"]  # fmt: skip
    b1.join_invited(cluster, via=[a.server_name])
    c1.join_invited(cluster, via=[a.server_name])
    room = a1.create_room(preset="public_chat")
    for u in (b1, c1):
        u.join(room, via=[a.server_name])
    trio = [a1.user_id, b1.user_id, c1.user_id]
    wait_until(lambda: a1.joined_members(room) == set(trio), timeout=60)
    first = ask(a1, room, trio, total=3000)["event_id"]
    wait_until(lambda: c1.laiwang("GET", path(room, first))["state"] == "open", timeout=60)
    wait_until(lambda: c1.user_id in {n["user_id"] for n in tree(c1, cluster)["nodes"]})

    def with_c(hs: TestHomeserver) -> list[tuple]:
        return [r for r in acquaintances(hs, everyone) if c1.user_id in r[:2]]

    c.kill()
    # While C is down: B's user joins the cluster through A's user, bills are paid and closed,
    # A's user posts, one acquaintance is made and one (C's user's) ended.
    assert join_by_asking(b2, cluster, via=[a.server_name]) == {"room_id": cluster}
    a1.laiwang("POST", path(room, first, "pay"), {"method": "cash", "payer": b1.user_id})
    a1.laiwang("POST", path(room, first, "close"))
    second = ask(a1, room, trio, total=6000, title="Taxi")["event_id"]
    a1.laiwang("POST", path(room, second, "pay"), {"method": "cash", "payer": c1.user_id})
    post = a1.send_text(timeline, "posted while C was down")
    make_acquainted(a1, b3)
    b1.leave(c_b1)
    wait_until(lambda: c1.user_id not in {x["user_id"] for x in b1.laiwang("GET", "/contacts")
                                          ["contacts"]})  # fmt: skip

    # C missed all of it (its database, read while it is down).
    assert ledger(c, room) != ledger(a, room) and members(c, cluster) != members(a, cluster)
    assert not sql(c, "SELECT 1 FROM laiwang_timeline_posts WHERE event_id = ?", post)
    assert len(with_c(c)) == 4  # still acquainted with both A's and B's user

    start_again([c])
    c1.send_text(room, "back")  # C is heard from: the others stop backing off

    def differences() -> dict[str, Any]:
        """What C still has otherwise than A and B (empty once it has caught up)."""
        views: dict[str, list[Any]] = {
            "ledger": [ledger(hs, room) for hs in (a, b, c)],
            # Each server indexes the pairs of the contact rooms it is in: C's pairs are those
            # A and B index with C's user.
            "acquaintances": [
                sorted({r for hs in (a, b) for r in with_c(hs)}),
                sorted({r for hs in (a, b) for r in with_c(hs)}),
                with_c(c),
            ],
            "cluster members": [members(hs, cluster) for hs in (a, b, c)],
            "tree": [shape(tree(u, cluster)) for u in (a1, b1, c1)],
        }
        diff = {k: v for k, v in views.items() if not v[0] == v[1] == v[2]}
        if post not in feed(c1):
            diff["feed"] = feed(c1)
        return diff

    try:
        wait_until(lambda: not differences(), timeout=180, interval=1)
    finally:
        print(differences())
    assert differences() == {}
    assert ledger(c, room)["requests"] == sorted(
        [(first, a1.user_id, 3000, "closed"), (second, a1.user_id, 6000, "open")]
    )
    assert shape(tree(c1, cluster))[b2.user_id] == (a1.user_id, 1)
    # The acquaintance index of C's user: A's user still, B's user no longer.
    assert {r[1] for r in acquaintances(c, everyone) if r[0] == c1.user_id} == {a1.user_id}
    # What C's user and A's user owe each other reads the same from both sides.
    theirs = {(x["user_id"], x["currency"]): x["net"]
              for x in c1.laiwang("GET", "/aa/balances")["balances"]}  # fmt: skip
    mine = {(x["user_id"], x["currency"]): x["net"]
            for x in a1.laiwang("GET", "/aa/balances")["balances"]}  # fmt: skip
    assert theirs.get((a1.user_id, "CNY"), 0) == -mine.get((c1.user_id, "CNY"), 0)
