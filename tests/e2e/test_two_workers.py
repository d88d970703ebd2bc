"""The module on a production-shaped worker deployment (config/workers/): the main process and
two generic workers on PostgreSQL and Redis. Each user's requests alternate between worker1 and
worker2, so every flow crosses processes; every side effect must happen exactly once whichever
processes are notified of the event, which the tests check in the database and the rooms."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.test_aa import ask, path
from tests.e2e.test_clusters import join_by_asking, knock, shape, tree
from tests.harness.client import MatrixClient, MatrixError, wait_until
from tests.harness.servers import TestHomeserver, execute, sql, start_all
from tests.harness.social import make_acquainted
from tests.harness.workers import WorkerDeployment

pytestmark = pytest.mark.postgres


def memberships(d: WorkerDeployment, room: str, user_id: str) -> list[str]:
    """Every membership event of `user_id` in `room`, in order."""
    return [
        str(row[0])
        for row in sql(
            d.main,
            "SELECT membership FROM room_memberships WHERE room_id = ? AND user_id = ?"
            " ORDER BY event_stream_ordering",
            room,
            user_id,
        )
    ]


def feed(user: MatrixClient) -> list[str]:
    return [c["event_id"] for c in user.laiwang("GET", "/feed")["chunk"]]


def test_an_acquaintance_is_indexed_once_and_timelines_join_once(two_workers):
    d = two_workers
    alice, bob = d.new_user("alice"), d.new_user("bob")
    # Both timelines exist first: the acquaintance adds each to the other's.
    alice_tl = alice.laiwang("GET", "/timeline")["room_id"]
    bob_tl = bob.laiwang("GET", "/timeline")["room_id"]
    contact_room = make_acquainted(alice, bob)

    wait_until(lambda: memberships(d, alice_tl, bob.user_id) == ["invite", "join"], timeout=60)
    wait_until(lambda: memberships(d, bob_tl, alice.user_id) == ["invite", "join"], timeout=60)
    assert sorted(
        sql(d.main, "SELECT user_id, other_id FROM laiwang_acquaintances WHERE room_id = ?",
            contact_room)
    ) == sorted([(alice.user_id, bob.user_id), (bob.user_id, alice.user_id)])  # fmt: skip

    # A post is indexed once and shows in the feed on either worker.
    post = alice.send_text(alice_tl, "hello from a worker")
    wait_until(
        lambda: (
            sql(d.main, "SELECT room_id FROM laiwang_timeline_posts WHERE event_id = ?", post)
            == [(alice_tl,)]
        )
    )
    for reader in (d.on(bob, 0), d.on(bob, 1)):
        wait_until(lambda: feed(reader) == [post])  # noqa: B023 (called at once)

    # Ending the acquaintance takes each out of the other's timeline, once.
    bob.leave(contact_room)
    wait_until(lambda: not sql(d.main, "SELECT 1 FROM laiwang_acquaintances WHERE room_id = ?",
                               contact_room))  # fmt: skip
    wait_until(lambda: memberships(d, alice_tl, bob.user_id) == ["invite", "join", "leave"])
    wait_until(lambda: memberships(d, bob_tl, alice.user_id) == ["invite", "join", "leave"])
    time.sleep(2)  # a duplicate from a second process would land by now
    assert memberships(d, alice_tl, bob.user_id) == ["invite", "join", "leave"]
    assert memberships(d, bob_tl, alice.user_id) == ["invite", "join", "leave"]


def test_a_knock_is_approved_once(two_workers):
    d = two_workers
    a, b, c = d.new_user("a"), d.new_user("b"), d.new_user("c")
    make_acquainted(a, b)
    make_acquainted(a, c)
    room = a.laiwang("POST", "/clusters", {"topic": "Workers"})["room_id"]
    # B asks with any client's "ask to join" (a plain knock): every process is notified of it,
    # one lets B in, in A's name.
    knock(b, room)
    wait_until(lambda: memberships(d, room, b.user_id) == ["knock", "invite"])
    b.join(room)
    # C asks through the module's endpoint: an invite in A's name, then the join.
    assert join_by_asking(c, room) == {"room_id": room}
    time.sleep(2)  # a duplicate from a second process would land by now
    assert memberships(d, room, b.user_id) == ["knock", "invite", "join"]
    assert memberships(d, room, c.user_id) == ["invite", "join"]
    invites = [
        (ev["state_key"], ev["sender"])
        for ev in a.messages(room, limit=100)
        if ev["type"] == "m.room.member" and ev["content"]["membership"] == "invite"
    ]
    assert sorted(invites) == sorted([(b.user_id, a.user_id), (c.user_id, a.user_id)])
    wait_until(
        lambda: sorted(
            sql(d.main, "SELECT user_id, membership, invited_by FROM laiwang_cluster_members"
                " WHERE room_id = ?", room)
        ) == sorted([(a.user_id, "join", None), (b.user_id, "join", a.user_id),
                     (c.user_id, "join", a.user_id)])
    )  # fmt: skip
    for i in (0, 1):
        assert shape(tree(d.on(b, i), room))[b.user_id] == (a.user_id, 1)


def test_aa_ledger_rows_and_reminders_once(two_workers):
    d = two_workers
    alice, bob, carol = d.new_user("alice"), d.new_user("bob"), d.new_user("carol")
    room = alice.create_room(preset="public_chat")
    bob.join(room)
    carol.join(room)
    everyone = [alice.user_id, bob.user_id, carol.user_id]
    wait_until(lambda: alice.joined_members(room) == set(everyone))
    request_id = ask(alice, room, everyone, total=3000)["event_id"]
    paid = alice.laiwang(
        "POST", path(room, request_id, "pay"), {"method": "cash", "payer": bob.user_id}
    )["event_id"]

    # A reminder through worker1; the second, through worker2 within the hour, is refused.
    first = d.on(alice, 0).laiwang("POST", path(room, request_id, "remind"))
    assert first["mentioned"] == [carol.user_id]
    with pytest.raises(MatrixError) as e:
        d.on(alice, 1).laiwang("POST", path(room, request_id, "remind"))
    assert (e.value.status, e.value.errcode) == (429, "M_LIMIT_EXCEEDED")
    notices = [
        ev["event_id"]
        for ev in alice.messages(room, limit=100)
        if ev["type"] == "m.room.message" and ev["content"].get("msgtype") == "m.notice"
    ]
    assert notices == [first["event_id"]]

    # The ledger: one request, one row per share, one payment, the balances counted once.
    wait_until(
        lambda: sql(d.main, "SELECT paid FROM laiwang_aa_shares WHERE user_id = ?"
                    " AND request_event_id = ?", bob.user_id, request_id) == [(1,)]
    )  # fmt: skip
    assert sql(d.main, "SELECT state FROM laiwang_aa_requests WHERE room_id = ?", room) == [
        ("open",)
    ]
    assert sorted(
        sql(d.main, "SELECT user_id, paid, payment_event_id FROM laiwang_aa_shares"
            " WHERE request_event_id = ?", request_id)
    ) == sorted([(alice.user_id, 1, None), (bob.user_id, 1, paid),
                 (carol.user_id, 0, None)])  # fmt: skip
    balances = {
        (u, c): net
        for u, c, net in sql(
            d.main,
            "SELECT user_id, counterparty, net FROM laiwang_aa_balances WHERE net <> 0"
            " AND (user_id = ? OR counterparty = ?)",
            carol.user_id,
            carol.user_id,
        )
    }
    assert balances == {(carol.user_id, alice.user_id): -1000, (alice.user_id, carol.user_id): 1000}
    for i in (0, 1):
        assert d.on(carol, i).laiwang("GET", "/aa/balances")["balances"] == [
            {"user_id": alice.user_id, "currency": "CNY", "net": -1000}
        ]


def test_retry_and_reconcile_run_on_the_background_worker_only(two_workers):
    d = two_workers
    alice = d.new_user("alice")
    timeline = alice.laiwang("GET", "/timeline")["room_id"]
    post = alice.send_text(timeline, "retried")
    wait_until(lambda: sql(d.main, "SELECT 1 FROM laiwang_timeline_posts WHERE event_id = ?", post))
    # A failed update of this post, as a crashed attempt records it: due now.
    execute(
        d.main,
        "INSERT INTO laiwang_event_retries (event_id, feature, room_id, attempts, next_try,"
        " last_error) VALUES (?, 'shares', ?, 1, 0, 'staged')",
        post,
        timeline,
    )
    applied = f"laiwang shares: update from {post} applied on retry"
    background = d.workers[1]
    wait_until(lambda: applied in background.log(), timeout=30)
    assert not sql(d.main, "SELECT 1 FROM laiwang_event_retries WHERE event_id = ?", post)
    # The periodic reconcile (every 5 s here) runs there too, and nowhere else.
    wait_until(lambda: background.log().count("laiwang aa: reconciled") >= 2, timeout=30)
    for other in (d.main.process, d.workers[0]):
        log = other.log()
        assert "laiwang aa: reconciled" not in log and applied not in log
    # The index was right all along: one row, not two.
    assert sql(d.main, "SELECT COUNT(*) FROM laiwang_timeline_posts WHERE event_id = ?", post) == [
        (1,)
    ]


@pytest.fixture(scope="module")
def peer(test_root: Path) -> Iterator[TestHomeserver]:
    """A single-process server federating with the worker deployment."""
    server = start_all([TestHomeserver(test_root / "hs-worker-peer", federation=True)])[0]
    yield server
    server.stop()


def test_inbound_federation_on_a_worker(two_workers, peer):
    """The peer's events arrive at worker1's federation listener; what they change in the
    module's tables changes once."""
    d = two_workers
    alice, zoe = d.new_user("alice"), peer.new_user("zoe")
    contact_room = make_acquainted(zoe, alice)  # zoe's invite and alice's join cross over
    assert sorted(
        sql(d.main, "SELECT user_id, other_id FROM laiwang_acquaintances WHERE room_id = ?",
            contact_room)
    ) == sorted([(alice.user_id, zoe.user_id), (zoe.user_id, alice.user_id)])  # fmt: skip
    room = zoe.create_room(preset="public_chat")
    alice.join(room, via=[peer.server_name])
    wait_until(lambda: zoe.joined_members(room) == {zoe.user_id, alice.user_id}, timeout=60)
    request_id = ask(zoe, room, [zoe.user_id, alice.user_id], total=2000)["event_id"]
    paid = zoe.laiwang(
        "POST", path(room, request_id, "pay"), {"method": "cash", "payer": alice.user_id}
    )["event_id"]
    wait_until(
        lambda: sql(d.main, "SELECT state FROM laiwang_aa_requests WHERE event_id = ?",
                    request_id) == [("settled",)], timeout=60
    )  # fmt: skip
    assert sorted(
        sql(d.main, "SELECT user_id, paid, payment_event_id FROM laiwang_aa_shares"
            " WHERE request_event_id = ?", request_id)
    ) == sorted([(zoe.user_id, 1, None), (alice.user_id, 1, paid)])  # fmt: skip
    assert sql(d.main, "SELECT COUNT(*) FROM laiwang_aa_payments WHERE request_event_id = ?",
               request_id) == [(1,)]  # fmt: skip
    # worker1 received the transactions (its access log), the main process none.
    assert '"PUT /_matrix/federation/v1/send/' in d.workers[0].log()
    assert '"PUT /_matrix/federation/v1/send/' not in d.main.process.log()


def test_every_process_runs_the_module(two_workers):
    """The module's endpoints answer on both workers, and each process loaded the module."""
    d = two_workers
    alice = d.new_user("alice")
    for i in (0, 1):
        assert "accept_requests_from" in d.on(alice, i).laiwang("GET", "/settings")
    seen = Counter(p.log().count("laiwang_module") > 0 for p in d.processes)
    assert seen == Counter({True: 3})
