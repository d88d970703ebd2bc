"""Benchmark of clusters: discovery over many clusters, and the join decision in a big one.

    .venv/bin/python -m bench.clusters_bench                # SQLite, and PostgreSQL if one answers
    .venv/bin/python -m bench.clusters_bench --clusters 20000 --sqlite-only

On a real Synapse with the module (one per database), the module's tables are seeded directly:

1. `GET /clusters/discover` for a user with 500 acquaintances over 100,000 clusters of 8 members
   each, drawn from 50,000 people (so each acquaintance is in about 16 clusters and the caller has
   about 8,000 (cluster, acquaintance) pairs to rank). The median round trip of the endpoint is
   reported. Target: median under 100 ms.
2. The join decision — "which joined members of this cluster are acquaintances of the caller" —
   the very SQL of `laiwang_module.storage.clusters.get_acquainted_members_txn`, timed straight on
   the database for clusters of 1,000, 10,000 and 100,000 members and callers with 10, 100, 500
   and 2,000 acquaintances (a tenth of them members of the cluster). Target: under 5 ms for a 10,000-member cluster, growing with the
   caller's acquaintances, not with the cluster's size.
3. (`--membership`, no homeserver needed) The membership index under a flood of joins: n users
   join one cluster, one event (one transaction) each, through the very SQL of
   `laiwang_module.storage.clusters.update_cluster_members_txn`, against the `COUNT(*)` per event
   it replaced (kept below as the baseline). Reported: the total for n joins and the cost of one
   join at the end, for n = 1,000, 4,000 and 16,000. Quadratic work shows as a total that grows
   16x per 4x joins and a per-join cost that grows with n; incremental work as neither.
   Measured (`python -m bench.clusters_bench --membership`, 2 shared cores):
       joins  SQLite before / now       PostgreSQL before / now (last joins, ms each)
       1,000  0.12 s / 0.05 s           3.1 / 1.1
       4,000  1.33 s / 0.13 s           5.7 / 1.8
      16,000  19.8 s / 0.84 s           11.5 / 2.0   (totals 128 s / 31 s)
4. The same decision through the endpoint: a stranger's `POST /clusters/{room_id}/join` (a 403
   after the decision; the stranger has 50 acquaintances per cluster, none inside) on a real cluster whose
   index holds 10 members and then 10,000; the ratio
   of the two medians shows whether the cluster's size costs anything.
5. (`collect`, the runner's part) The same on a cluster whose members really joined the room in
   Synapse (2,000 with `--quick`, 10,000 without; an admin invites them, which skips the
   acquaintance policy, and they join): a stranger with 2,000 acquaintances, none inside, asks
   to join it and a 2-member cluster, interleaved (403 each), and the decision's SQL for a
   caller with 2,000 acquaintances, a tenth of them members. Target: under 5 ms.
"""

from __future__ import annotations

import argparse
import random
import secrets
import sqlite3
import statistics
import time
from typing import Any
from urllib.parse import quote

from bench.common import (
    ACQUAINTANCE_COLUMNS,
    BenchDatabase,
    BenchServer,
    acquaintance_rows,
    backends,
    bench_root,
    bench_server,
    for_each_backend,
    median_p95_ms,
    result,
    timed,
)
from laiwang_module.storage.clusters import (
    MemberUpdate,
    get_acquainted_members_txn,
    update_cluster_members_txn,
)
from laiwang_module.storage.schema.migrations import CLUSTERS
from tests.harness.servers import (
    create_postgres_database,
    drop_postgres_database,
    postgres_available,
)

Row = tuple[Any, ...]
CLUSTER_COLUMNS = (
    "room_id",
    "topic",
    "creator",
    "created_ts",
    "member_count",
    "last_active_ts",
    "members_synced",
)
MEMBER_COLUMNS = ("room_id", "user_id", "membership", "invited_by", "joined_ts", "event_id")


def analyze(db: BenchDatabase) -> None:
    """Statistics (and on PostgreSQL the visibility map, for index-only scans), as
    autovacuum would have them on a server that has been running."""
    db.maintain("VACUUM ANALYZE" if db.postgres else "ANALYZE")


def seed_discovery(
    db: BenchDatabase, me: str, server: str, args: argparse.Namespace, tag: str = ""
) -> None:
    rng = random.Random(7 + len(tag))
    people = [f"@p{i}:{server}" for i in range(args.people)]
    friends = rng.sample(people, args.acquaintances)
    pairs = ((me, other, "!contact:bench") for other in friends)
    db.insert("laiwang_acquaintances", ACQUAINTANCE_COLUMNS, acquaintance_rows(pairs, 1))
    clusters: list[Row] = []
    members: list[Row] = []
    for c in range(args.clusters):
        room_id = f"!c{tag}{c}:{server}"
        chosen = rng.sample(people, args.members)
        ts = 1_700_000_000_000 + rng.randrange(10**9)
        clusters.append((room_id, f"Topic {c}", chosen[0], ts, args.members, ts, 1))
        for i, user_id in enumerate(chosen):
            inviter = None if i == 0 else chosen[rng.randrange(i)]
            members.append((room_id, user_id, "join", inviter, ts + i, f"$m{tag}{c}_{i}"))
        if len(members) >= 200_000:
            db.insert("laiwang_cluster_members", MEMBER_COLUMNS, members)
            members = []
    db.insert("laiwang_clusters", CLUSTER_COLUMNS, clusters)
    db.insert("laiwang_cluster_members", MEMBER_COLUMNS, members)


def bench_discover(
    server: BenchServer, db: BenchDatabase, args: argparse.Namespace, tag: str = ""
) -> dict[str, Any]:
    me = server.register(f"discoverer{tag}")
    me.laiwang("GET", "/clusters/discover")  # the schema exists once the module has answered
    start = time.perf_counter()
    seed_discovery(db, me.user_id, server.spec.server_name, args, tag)
    analyze(db)
    seeded_s = time.perf_counter() - start
    found = me.laiwang("GET", "/clusters/discover", params={"limit": 20})["clusters"]
    for _ in range(5):
        me.laiwang("GET", "/clusters/discover")
    times = [timed(lambda: me.laiwang("GET", "/clusters/discover")) for _ in range(args.requests)]
    median_ms, p95_ms = median_p95_ms(times)
    return {
        "times": times,
        "seeded_s": seeded_s,
        "top_acquaintances": len(found[0]["acquaintances"]) if found else 0,
        "median_ms": median_ms,
        "p95_ms": p95_ms,
    }


def seed_cluster(
    db: BenchDatabase, server: str, room_id: str, size: int, caller: str, inside: int, outside: int
) -> None:
    """A cluster of `size` members, `inside` of whom are acquaintances of `caller`, who has
    `outside` more acquaintances who are not in it."""
    tag = secrets.token_hex(3)
    members = [f"@m{i}_{tag}:{server}" for i in range(size)]
    db.insert("laiwang_cluster_members", MEMBER_COLUMNS,
              [(room_id, u, "join", None, i, f"$j{i}_{tag}") for i, u in enumerate(members)])  # fmt: skip
    friends = random.Random(size + inside).sample(members, min(inside, size))
    friends += [f"@out{i}_{tag}:{server}" for i in range(outside)]
    db.insert("laiwang_acquaintances", ACQUAINTANCE_COLUMNS,
              [(caller, o, "!contact:bench", "request", 1) for o in friends])  # fmt: skip


def bench_decision(
    db: BenchDatabase, server: str, args: argparse.Namespace
) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for size in getattr(args, "sizes", (1000, 10000, 100000)):
        for friends in (10, 100, 500, 2000):
            room_id = f"!size{size}_{friends}_{secrets.token_hex(2)}:{server}"
            caller = f"@caller{size}_{friends}_{secrets.token_hex(2)}:{server}"
            inside = max(1, friends // 10)
            seed_cluster(db, server, room_id, size, caller, inside, friends - inside)
            analyze(db)
            txn = db.txn()
            found = get_acquainted_members_txn(txn, room_id, caller)
            assert len(found) == inside, (len(found), friends)
            for _ in range(5):
                get_acquainted_members_txn(txn, room_id, caller)
            times = [
                timed(lambda: get_acquainted_members_txn(txn, room_id, caller))  # noqa: B023
                for _ in range(args.decisions)
            ]
            out.append({"size": size, "friends": friends, "ms": statistics.median(times) * 1000,
                        "times": times})  # fmt: skip
    return out


def bench_join_endpoint(
    server: BenchServer, db: BenchDatabase, args: argparse.Namespace
) -> dict[str, float]:
    owner, stranger = server.register("owner"), server.register("stranger")
    paths: dict[int, str] = {}
    for size in (10, 10000):
        room = owner.laiwang("POST", "/clusters", {"topic": f"{size} members"})["room_id"]
        seed_cluster(db, server.spec.server_name, room, size - 1, stranger.user_id, 0, 50)
        paths[size] = f"/clusters/{quote(room)}/join"
    analyze(db)

    def ask(size: int) -> None:
        r = stranger.laiwang_raw("POST", paths[size], {})
        assert r.status_code == 403, r.text

    for _ in range(10):
        ask(10)
        ask(10000)
    times: dict[int, list[float]] = {10: [], 10000: []}
    for i in range(args.requests):  # interleaved, so that drift hits both alike
        for size in (10, 10000) if i % 2 else (10000, 10):
            times[size].append(timed(lambda size=size: ask(size)))  # type: ignore[misc]
    small, big = statistics.median(times[10]), statistics.median(times[10000])
    return {"small_ms": small * 1000, "big_ms": big * 1000, "ratio": big / small}


def run(server: BenchServer, args: argparse.Namespace) -> None:
    name = server.name
    with server.database() as db:  # seeded and queried while the server runs
        d = bench_discover(server, db, args)
        print(
            f"[{name}] GET /clusters/discover, {args.acquaintances} acquaintances over "
            f"{args.clusters} clusters of {args.members} (seeded in {d['seeded_s']:.0f} s; "
            f"top cluster has {d['top_acquaintances']} acquaintances): median "
            f"{d['median_ms']:.1f} ms, p95 {d['p95_ms']:.1f} ms; target median < 100 ms"
        )
        for row in bench_decision(db, server.spec.server_name, args):
            print(
                f"[{name}] join decision, cluster of {row['size']:>6} members, caller with "
                f"{row['friends']:>4} acquaintances: {row['ms']:.3f} ms median"
                + ("  (target < 5 ms)" if row["size"] == 10000 else "")
            )
        j = bench_join_endpoint(server, db, args)
        print(
            f"[{name}] POST /clusters/{{id}}/join by a stranger (403): 10 members "
            f"{j['small_ms']:.1f} ms, 10,000 members {j['big_ms']:.1f} ms median -> "
            f"ratio {j['ratio']:.2f} (1.0: the cluster's size costs nothing)"
        )


def bench_real_cluster(
    server: BenchServer, db: BenchDatabase, members: int, acquaintances: int, requests: int
) -> dict[str, Any]:
    """The join decision on clusters whose members really joined the room in Synapse: a
    stranger with `acquaintances` acquaintances (none inside) asks to join a 2-member cluster
    and a `members`-member one (a 403 each; interleaved), and the decision's SQL for a caller
    with `acquaintances` acquaintances, a tenth of them members."""
    owner = server.register("realowner", admin=True)  # an admin's invites skip the policy
    small = owner.laiwang("POST", "/clusters", {"topic": "two members"})["room_id"]
    big = owner.laiwang("POST", "/clusters", {"topic": f"{members} members"})["room_id"]
    users = [server.register(f"member{i}") for i in range(members)]
    start = time.perf_counter()
    for user in users:
        owner.invite(big, user.user_id)
        user.join(big)
    filled_s = time.perf_counter() - start
    owner.invite(small, users[0].user_id)
    users[0].join(small)
    stranger = server.register("realstranger")
    knows = server.register("realfriend")
    tag = secrets.token_hex(3)
    outside = [f"@out{i}_{tag}:{server.spec.server_name}" for i in range(acquaintances)]
    inside = [u.user_id for u in users[: acquaintances // 10]]
    rows = [(stranger.user_id, o, "!contact:bench", "request", 1) for o in outside]
    rows += [(knows.user_id, o, "!contact:bench", "request", 1)
             for o in inside + outside[len(inside):]]  # fmt: skip
    db.insert("laiwang_acquaintances", ACQUAINTANCE_COLUMNS, rows)
    analyze(db)
    paths = {2: f"/clusters/{quote(small)}/join", members: f"/clusters/{quote(big)}/join"}

    def ask(size: int) -> None:
        r = stranger.laiwang_raw("POST", paths[size], {})
        assert r.status_code == 403, r.text

    for _ in range(5):
        ask(2)
        ask(members)
    times: dict[int, list[float]] = {2: [], members: []}
    for i in range(requests):  # interleaved, so that drift hits both alike
        for size in (2, members) if i % 2 else (members, 2):
            times[size].append(timed(lambda size=size: ask(size)))  # type: ignore[misc]
    txn = db.txn()
    found = get_acquainted_members_txn(txn, big, knows.user_id)
    assert len(found) == len(inside), (len(found), len(inside))
    sql = [timed(lambda: get_acquainted_members_txn(txn, big, knows.user_id))
           for _ in range(max(50, requests))]  # fmt: skip
    return {"filled_s": filled_s, "small": times[2], "big": times[members], "sql": sql}


def collect(quick: bool, sqlite_only: bool = False) -> list[dict[str, Any]]:
    args = argparse.Namespace(
        clusters=10_000 if quick else 100_000,
        members=8,
        people=5_000 if quick else 50_000,
        acquaintances=500,
        requests=20 if quick else 100,
        decisions=50 if quick else 200,
        sizes=(1000, 10000) if quick else (1000, 10000, 100000),
    )
    real_members = 2000 if quick else 10_000
    out: list[dict[str, Any]] = []
    with bench_root("laiwang-clusters-bench-") as root:
        for backend in backends(skip_postgres=sqlite_only):
            with bench_server(root, backend) as server, server.database() as db:
                name = server.name
                total = 0
                for tag, count in (("a", args.clusters // 10), ("b", args.clusters * 9 // 10)):
                    args.clusters = count
                    d = bench_discover(server, db, args, tag)
                    total += count
                    out.append(result("clusters", "GET /clusters/discover", name, d["times"],
                                      size=total, target="median < 100 ms",
                                      met=d["median_ms"] < 100,
                                      acquaintances=args.acquaintances,
                                      top_acquaintances=d["top_acquaintances"]))  # fmt: skip
                for row in bench_decision(db, server.spec.server_name, args):
                    decided = row["size"] == 10000 and row["friends"] == 2000
                    out.append(result("clusters", "join decision (SQL), index-only cluster of "
                                      f"{row['size']:,}", name, row["times"], size=row["friends"],
                                      series=f"{row['size']:,} members (index only)",
                                      target="< 5 ms" if decided else "",
                                      met=row["ms"] < 5 if decided else None))  # fmt: skip
                r = bench_real_cluster(server, db, real_members, 2000, args.requests)
                sql_ms = median_p95_ms(r["sql"])[0]
                out.append(result("clusters", f"join decision (SQL), real cluster of "
                                  f"{real_members:,} joined members", name, r["sql"], size=2000,
                                  series=f"{real_members:,} real members", target="< 5 ms",
                                  met=sql_ms < 5, filled_s=r["filled_s"]))  # fmt: skip
                small = median_p95_ms(r["small"])[0]
                for key, size in (("small", 2), ("big", real_members)):
                    out.append(result("clusters", f"POST /clusters/{{id}}/join by a stranger"
                                      f" with 2,000 acquaintances (403), {size:,} real members",
                                      name, r[key], size=size,
                                      ratio=median_p95_ms(r[key])[0] / small))  # fmt: skip
    return out


# --- 3. the membership index under a flood of joins ---


class MembershipTxn:
    """The part of Synapse's LoggingTransaction the index uses (`?` placeholders on both)."""

    def __init__(self, conn: Any, postgres: bool):
        self.conn, self.postgres, self.cur = conn, postgres, conn.cursor()

    def execute(self, sql: str, args: Any = ()) -> None:
        self.cur.execute(sql.replace("?", "%s") if self.postgres else sql, tuple(args))

    def execute_batch(self, sql: str, rows: Any) -> None:
        self.cur.executemany(sql.replace("?", "%s") if self.postgres else sql, list(rows))

    def fetchone(self) -> Any:
        return self.cur.fetchone()

    def fetchall(self) -> Any:
        return self.cur.fetchall()

    @property
    def rowcount(self) -> int:
        return int(self.cur.rowcount)


def recount_baseline_txn(txn: Any, room_id: str, updates: list[MemberUpdate], _: bool) -> None:
    """What update_cluster_members did before: the upsert, then a COUNT(*) over the room."""
    txn.execute_batch(
        "INSERT INTO laiwang_cluster_members"
        " (room_id, user_id, membership, invited_by, joined_ts, event_id)"
        " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (room_id, user_id) DO UPDATE SET"
        " membership = excluded.membership, invited_by = excluded.invited_by,"
        " joined_ts = excluded.joined_ts, event_id = excluded.event_id"
        " WHERE laiwang_cluster_members.event_id <> excluded.event_id",
        [(room_id, u.user_id, u.membership, u.invited_by, u.joined_ts, u.event_id)
         for u in updates],
    )  # fmt: skip
    txn.execute(
        "UPDATE laiwang_clusters SET member_count = (SELECT COUNT(*) FROM laiwang_cluster_members"
        " WHERE room_id = ? AND membership = 'join') WHERE room_id = ?",
        (room_id, room_id),
    )


def membership_flood(conn: Any, postgres: bool, apply: Any, n: int) -> tuple[float, float]:
    """n joins into a fresh cluster, a transaction each: (total seconds, ms per join over the
    last tenth)."""
    txn = MembershipTxn(conn, postgres)
    room_id = f"!flood{secrets.token_hex(4)}:bench"
    txn.execute(
        "INSERT INTO laiwang_clusters (room_id, topic, creator, created_ts, member_count,"
        " last_active_ts, members_synced) VALUES (?, 't', '@c:bench', 0, 0, 0, 1)",
        (room_id,),
    )
    conn.commit()
    tail = max(1, n // 10)
    start = tail_start = time.perf_counter()
    for i in range(n):
        if i == n - tail:
            tail_start = time.perf_counter()
        update = MemberUpdate(f"@u{i}:bench", "join", None, i, f"$j{i}_{room_id}")
        apply(txn, room_id, [update], False)
        conn.commit()
    end = time.perf_counter()
    txn.execute("SELECT member_count FROM laiwang_clusters WHERE room_id = ?", (room_id,))
    (count,) = txn.fetchone()
    assert count == n, (count, n)
    # Every join again (a re-delivery, or a second worker): nothing is counted twice.
    for i in range(n - tail, n):
        update = MemberUpdate(f"@u{i}:bench", "join", None, i, f"$j{i}_{room_id}")
        update_cluster_members_txn(txn, room_id, [update], False)  # type: ignore[arg-type]
    txn.execute("SELECT member_count FROM laiwang_clusters WHERE room_id = ?", (room_id,))
    assert txn.fetchone()[0] == n
    conn.commit()
    return end - start, (end - tail_start) / tail * 1000


def bench_membership(args: argparse.Namespace) -> None:
    engines = ["sqlite"] + ([] if args.sqlite_only or not postgres_available() else ["postgres"])
    for engine in engines:
        pg_args: dict[str, Any] | None = None
        if engine == "postgres":
            import psycopg2

            pg_args = create_postgres_database()
            conn: Any = psycopg2.connect(
                **{k: v for k, v in pg_args.items() if not k.startswith("cp_")}
            )
        else:
            conn = sqlite3.connect(":memory:")
        txn = MembershipTxn(conn, engine == "postgres")
        for _, statements in CLUSTERS.migrations:
            for statement in statements:
                txn.execute(statement)
        conn.commit()
        try:
            for n in args.joins:
                for name, apply in (("COUNT(*) per event (before)", recount_baseline_txn),
                                    ("incremental (now)", update_cluster_members_txn)):  # fmt: skip
                    total, last = membership_flood(conn, engine == "postgres", apply, n)
                    print(
                        f"[{engine}] {n:>6} joins, {name:<27}: total {total:7.2f} s,"
                        f" last joins {last:6.3f} ms each"
                    )
        finally:
            conn.close()
            if pg_args is not None:
                drop_postgres_database(pg_args)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--clusters", type=int, default=100_000)
    parser.add_argument("--members", type=int, default=8)
    parser.add_argument("--people", type=int, default=50_000)
    parser.add_argument("--acquaintances", type=int, default=500)
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--decisions", type=int, default=200)
    parser.add_argument("--sqlite-only", action="store_true")
    parser.add_argument(
        "--membership",
        action="store_true",
        help="only the membership flood (3.), without a homeserver",
    )
    parser.add_argument("--joins", type=int, nargs="+", default=[1000, 4000, 16000])
    args = parser.parse_args()
    if args.membership:
        bench_membership(args)
        return
    for_each_backend(lambda server: run(server, args), args.sqlite_only, "laiwang-clusters-bench-")


if __name__ == "__main__":
    main()
