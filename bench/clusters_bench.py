"""Benchmark of clusters: discovery over many clusters, and the join decision in a big one.

    .venv/bin/python -m bench.clusters_bench                # SQLite, and PostgreSQL if one answers
    .venv/bin/python -m bench.clusters_bench --clusters 20000 --sqlite-only

On a real Synapse with the module (one per database), the module's tables are seeded directly:

1. `GET /clusters/discover` for a user with 500 acquaintances over 100,000 clusters of 8 members
   each, drawn from 50,000 people (so each acquaintance is in about 16 clusters and the caller has
   about 8,000 (cluster, acquaintance) pairs to rank). The median round trip of the endpoint is
   reported. Target: median under 100 ms.
2. The join decision — "which joined members of this cluster are acquaintances of the caller" —
   the very SQL of `laiwang_module.storage.clusters.acquainted_members_txn`, timed straight on
   the database for clusters of 1,000, 10,000 and 100,000 members and callers with 10, 100, 500
   and 2,000 acquaintances (a tenth of them members of the cluster). Target: under 5 ms for a 10,000-member cluster, growing with the
   caller's acquaintances, not with the cluster's size.
3. The same decision through the endpoint: a stranger's `POST /clusters/{room_id}/join` (a 403
   after the decision; the stranger has 50 acquaintances per cluster, none inside) on a real cluster whose
   index holds 10 members and then 10,000; the ratio
   of the two medians shows whether the cluster's size costs anything.
"""

from __future__ import annotations

import argparse
import random
import secrets
import shutil
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

from laiwang_module.devserver import HomeserverSpec, SynapseProcess, free_port, register_user
from laiwang_module.storage.clusters import acquainted_members_txn
from tests.harness.client import MatrixClient
from tests.harness.servers import (
    create_postgres_database,
    drop_postgres_database,
    postgres_available,
)

Row = tuple[Any, ...]


def new_user(spec: HomeserverSpec, name: str) -> MatrixClient:
    localpart = f"{name}_{secrets.token_hex(3)}"
    reply = register_user(
        spec.base_url, spec.registration_shared_secret, localpart, secrets.token_urlsafe(12)
    )
    return MatrixClient(spec.base_url, reply["user_id"], reply["access_token"])


def timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


class Database:
    """The homeserver's database, opened next to Synapse for seeding and timing SQL."""

    def __init__(self, spec: HomeserverSpec):
        self.pg = spec.database is not None
        if self.pg:
            import psycopg2

            assert spec.database is not None
            args = {k: v for k, v in spec.database.items() if not k.startswith("cp_")}
            self.conn: Any = psycopg2.connect(**args)
        else:
            self.conn = sqlite3.connect(spec.directory / "homeserver.db", timeout=120)

    def insert(self, table: str, columns: str, rows: Sequence[Row]) -> None:
        if self.pg:
            from psycopg2.extras import execute_values

            with self.conn.cursor() as cur:
                execute_values(cur, f"INSERT INTO {table} ({columns}) VALUES %s", rows, None, 5000)
        else:
            marks = ", ".join("?" * (columns.count(",") + 1))
            self.conn.executemany(f"INSERT INTO {table} ({columns}) VALUES ({marks})", rows)
        self.conn.commit()

    def analyze(self) -> None:
        """Statistics (and on PostgreSQL the visibility map, for index-only scans), as
        autovacuum would have them on a server that has been running."""
        if self.pg:
            self.conn.autocommit = True
            self.conn.cursor().execute("VACUUM ANALYZE")
            self.conn.autocommit = False
        else:
            self.conn.execute("ANALYZE")
            self.conn.commit()

    def txn(self) -> Any:
        """A cursor that takes `?` placeholders on both engines, as Synapse's transactions do."""
        cur = self.conn.cursor()
        if not self.pg:
            return cur

        class Txn:
            def execute(self, sql: str, args: Iterable[Any] = ()) -> None:
                cur.execute(sql.replace("?", "%s"), tuple(args))

            def fetchall(self) -> list[Row]:
                return list(cur.fetchall())

        return Txn()

    def close(self) -> None:
        self.conn.close()


def acquaintance_rows(user_id: str, others: Iterable[str]) -> list[Row]:
    rows: list[Row] = []
    for other in others:
        rows.append((user_id, other, "!contact:bench", "request", 1))
        rows.append((other, user_id, "!contact:bench", "request", 1))
    return rows


def seed_discovery(db: Database, me: str, server: str, args: argparse.Namespace) -> None:
    rng = random.Random(7)
    people = [f"@p{i}:{server}" for i in range(args.people)]
    db.insert("laiwang_acquaintances", "user_id, other_id, room_id, source, since_ts",
              acquaintance_rows(me, rng.sample(people, args.acquaintances)))  # fmt: skip
    clusters: list[Row] = []
    members: list[Row] = []
    for c in range(args.clusters):
        room_id = f"!c{c}:{server}"
        chosen = rng.sample(people, args.members)
        ts = 1_700_000_000_000 + rng.randrange(10**9)
        clusters.append((room_id, f"Topic {c}", chosen[0], ts, args.members, ts, 1))
        for i, user_id in enumerate(chosen):
            inviter = None if i == 0 else chosen[rng.randrange(i)]
            members.append((room_id, user_id, "join", inviter, ts + i, f"$m{c}_{i}"))
        if len(members) >= 200_000:
            db.insert("laiwang_cluster_members",
                      "room_id, user_id, membership, invited_by, joined_ts, event_id", members)  # fmt: skip
            members = []
    db.insert("laiwang_clusters", "room_id, topic, creator, created_ts, member_count,"
              " last_active_ts, members_synced", clusters)  # fmt: skip
    db.insert("laiwang_cluster_members",
              "room_id, user_id, membership, invited_by, joined_ts, event_id", members)  # fmt: skip


def bench_discover(spec: HomeserverSpec, db: Database, args: argparse.Namespace) -> dict:
    me = new_user(spec, "discoverer")
    me.laiwang("GET", "/clusters/discover")  # the schema exists once the module has answered
    start = time.perf_counter()
    seed_discovery(db, me.user_id, spec.server_name, args)
    db.analyze()
    seeded_s = time.perf_counter() - start
    found = me.laiwang("GET", "/clusters/discover", params={"limit": 20})["clusters"]
    for _ in range(5):
        me.laiwang("GET", "/clusters/discover")
    times = sorted(
        timed(lambda: me.laiwang("GET", "/clusters/discover")) for _ in range(args.requests)
    )
    return {
        "seeded_s": seeded_s,
        "top_acquaintances": len(found[0]["acquaintances"]) if found else 0,
        "median_ms": statistics.median(times) * 1000,
        "p95_ms": times[int(len(times) * 0.95) - 1] * 1000,
    }


def seed_cluster(
    db: Database, server: str, room_id: str, size: int, caller: str, inside: int, outside: int
) -> None:
    """A cluster of `size` members, `inside` of whom are acquaintances of `caller`, who has
    `outside` more acquaintances who are not in it."""
    tag = secrets.token_hex(3)
    members = [f"@m{i}_{tag}:{server}" for i in range(size)]
    db.insert("laiwang_cluster_members",
              "room_id, user_id, membership, invited_by, joined_ts, event_id",
              [(room_id, u, "join", None, i, f"$j{i}_{tag}") for i, u in enumerate(members)])  # fmt: skip
    friends = random.Random(size + inside).sample(members, min(inside, size))
    friends += [f"@out{i}_{tag}:{server}" for i in range(outside)]
    db.insert("laiwang_acquaintances", "user_id, other_id, room_id, source, since_ts",
              [(caller, o, "!contact:bench", "request", 1) for o in friends])  # fmt: skip


def bench_decision(db: Database, server: str, args: argparse.Namespace) -> list[dict]:
    out = []
    for size in (1000, 10000, 100000):
        for friends in (10, 100, 500, 2000):
            room_id = f"!size{size}_{friends}_{secrets.token_hex(2)}:{server}"
            caller = f"@caller{size}_{friends}_{secrets.token_hex(2)}:{server}"
            inside = max(1, friends // 10)
            seed_cluster(db, server, room_id, size, caller, inside, friends - inside)
            db.analyze()
            txn = db.txn()
            found = acquainted_members_txn(txn, room_id, caller)
            assert len(found) == inside, (len(found), friends)
            for _ in range(5):
                acquainted_members_txn(txn, room_id, caller)
            times = [
                timed(lambda: acquainted_members_txn(txn, room_id, caller))  # noqa: B023
                for _ in range(args.decisions)
            ]
            out.append({"size": size, "friends": friends, "ms": statistics.median(times) * 1000})
    return out


def bench_join_endpoint(spec: HomeserverSpec, db: Database, args: argparse.Namespace) -> dict:
    owner, stranger = new_user(spec, "owner"), new_user(spec, "stranger")
    paths = {}
    for size in (10, 10000):
        room = owner.laiwang("POST", "/clusters", {"topic": f"{size} members"})["room_id"]
        seed_cluster(db, spec.server_name, room, size - 1, stranger.user_id, 0, 50)
        paths[size] = f"/clusters/{quote(room)}/join"
    db.analyze()

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


def run(database: dict[str, Any] | None, args: argparse.Namespace) -> None:
    directory = Path(tempfile.mkdtemp(prefix="laiwang-clusters-bench-"))
    port = free_port()
    spec = HomeserverSpec(directory=directory, client_port=port,
                          server_name=f"localhost:{port}", database=database,
                          relaxed_ratelimits=True)  # fmt: skip
    process = SynapseProcess(spec)
    process.start()
    name = "SQLite" if database is None else "PostgreSQL"
    try:
        process.wait_ready()
        db = Database(spec)
        try:
            d = bench_discover(spec, db, args)
            print(
                f"[{name}] GET /clusters/discover, {args.acquaintances} acquaintances over "
                f"{args.clusters} clusters of {args.members} (seeded in {d['seeded_s']:.0f} s; "
                f"top cluster has {d['top_acquaintances']} acquaintances): median "
                f"{d['median_ms']:.1f} ms, p95 {d['p95_ms']:.1f} ms; target median < 100 ms"
            )
            for row in bench_decision(db, spec.server_name, args):
                print(
                    f"[{name}] join decision, cluster of {row['size']:>6} members, caller with "
                    f"{row['friends']:>4} acquaintances: {row['ms']:.3f} ms median"
                    + ("  (target < 5 ms)" if row["size"] == 10000 else "")
                )
            j = bench_join_endpoint(spec, db, args)
            print(
                f"[{name}] POST /clusters/{{id}}/join by a stranger (403): 10 members "
                f"{j['small_ms']:.1f} ms, 10,000 members {j['big_ms']:.1f} ms median -> "
                f"ratio {j['ratio']:.2f} (1.0: the cluster's size costs nothing)"
            )
        finally:
            db.close()
    finally:
        process.stop()
        shutil.rmtree(directory, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--clusters", type=int, default=100_000)
    parser.add_argument("--members", type=int, default=8)
    parser.add_argument("--people", type=int, default=50_000)
    parser.add_argument("--acquaintances", type=int, default=500)
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--decisions", type=int, default=200)
    parser.add_argument("--sqlite-only", action="store_true")
    args = parser.parse_args()
    run(None, args)
    if not args.sqlite_only and postgres_available():
        db = create_postgres_database()
        try:
            run(db, args)
        finally:
            drop_postgres_database(db)


if __name__ == "__main__":
    main()
