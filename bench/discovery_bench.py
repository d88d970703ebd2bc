"""Benchmark of phone-number discovery: the server-side time of `POST /discovery/lookup`.

    .venv/bin/python -m bench.discovery_bench            # 10,000 and 1,000,000 users
    .venv/bin/python -m bench.discovery_bench --users 10000 --reps 10

For each database (SQLite, and PostgreSQL when one answers at 127.0.0.1:5432) and each
population, it starts a real Synapse with the module, registers the caller, stops it, bulk-inserts
the users and their msisdn 3pids straight into Synapse's tables (all discoverable: the default),
drops the module's discovery index and restarts, so the module rebuilds the index as it does on
first start (that time is reported too). Then it looks up address books of 100, 1,000 and 5,000
numbers of existing users (every address matches, the worst case: each match is also written to
the caller's address book) and reports the median processing time Synapse itself logs for each
request (its access log, millisecond resolution), next to the client's round-trip median.

Target: a 1,000-address lookup under 50 ms (median), growing with the request size and not with
the number of users.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from typing import Any

from bench.common import BenchServer, backends, bench_root, bench_server, median_p95_ms, result
from rooms.discovery import lookup_hash

SIZES = (100, 1000, 5000)
WARMUP = 5  # requests per size before measuring
LOOKUP_PATH = "/_synapse/client/laiwang/v1/discovery/lookup"
MODULE_CONFIG = {"discovery": {"max_addresses_per_request": 5000, "max_addresses_per_day": 10**9}}


def msisdn_of(i: int) -> str:
    return f"86139{i:08d}"


def seed(server: BenchServer, n: int) -> None:
    """`n` users with a validated msisdn each, and no discovery index (with the server stopped)."""
    now = int(time.time() * 1000)
    users = [server.user_id(f"bench{i}") for i in range(n)]
    with server.database() as db:
        db.insert("users", ("name", "creation_ts"), ((u, now // 1000) for u in users))
        db.insert(
            "user_threepids",
            ("user_id", "medium", "address", "validated_at", "added_at"),
            ((u, "msisdn", msisdn_of(i), now, now) for i, u in enumerate(users)),
        )
        # Seeding bypassed Synapse's 3pid callbacks: let the module build its index from scratch.
        db.execute("DELETE FROM laiwang_discovery_hashes")
        db.execute("DELETE FROM laiwang_discovery_state")
        if db.postgres:
            db.maintain("ANALYZE")


def index_built(server: BenchServer) -> bool:
    with server.database() as db:
        row = db.fetchone("SELECT built FROM laiwang_discovery_state")
    return bool(row and row[0])


def run_one(server: BenchServer, n: int, reps: int) -> list[tuple[Any, ...]]:
    backend = server.backend
    rows: list[tuple[Any, ...]] = []
    caller = server.register("caller")
    server.stop()

    t0 = time.monotonic()
    seed(server, n)
    seeded = time.monotonic() - t0

    t0 = time.monotonic()
    server.start()
    while not index_built(server):
        time.sleep(0.5)
    built = time.monotonic() - t0
    print(
        f"  {backend} {n:>9,} users: seeded in {seeded:.1f}s, index of {n:,} numbers built"
        f" in {built:.1f}s after restart",
        flush=True,
    )

    pepper = caller.laiwang("GET", "/discovery/hash_details")["lookup_pepper"]
    rng = random.Random(42)
    time.sleep(5)  # let Synapse's own start-up jobs settle before measuring
    for size in SIZES:
        client_ms: list[float] = []
        since = server.log_offset()
        for rep in range(reps + WARMUP):
            picks = rng.sample(range(n), size)
            body = {
                "algorithm": "sha256",
                "pepper": pepper,
                "addresses": [lookup_hash(msisdn_of(i), pepper) for i in picks],
            }
            t0 = time.perf_counter()
            r = caller.laiwang_raw("POST", "/discovery/lookup", body)
            elapsed = (time.perf_counter() - t0) * 1000
            r.raise_for_status()
            found = len(r.json()["mappings"])
            assert found == size, f"expected {size} matches, got {found}"
            if rep >= WARMUP:
                client_ms.append(elapsed)
        time.sleep(0.5)  # let the access log line of the last request land
        lookups = server.processed_ms(since, "POST", LOOKUP_PATH)[WARMUP:]
        rows.append(
            (
                backend,
                n,
                size,
                statistics.median(lookups),
                statistics.median(client_ms),
                len(lookups),
                median_p95_ms([ms / 1000 for ms in client_ms])[1],
            )
        )
        print(
            f"  {backend} {n:>9,} users, {size:>5} addresses: server median "
            f"{rows[-1][3]:.1f} ms, client round trip {rows[-1][4]:.1f} ms",
            flush=True,
        )
    return rows


def collect(quick: bool, sqlite_only: bool = False) -> list[dict[str, Any]]:
    populations, reps = ([10_000, 100_000], 10) if quick else ([10_000, 1_000_000], 25)
    out: list[dict[str, Any]] = []
    with bench_root("laiwang-discovery-bench-") as root:
        for backend in backends(skip_postgres=sqlite_only):
            for n in populations:
                with bench_server(root, backend, MODULE_CONFIG) as server:
                    for _, _, size, srv, cli, count, p95 in run_one(server, n, reps):
                        out.append(
                            result(
                                "discovery",
                                f"POST /discovery/lookup, {n:,} users",
                                server.name,
                                size=size,
                                median_ms=cli,
                                p95_ms=p95,
                                n=count,
                                server_median_ms=srv,
                                series=f"{n:,} users",
                                target="server median < 50 ms" if size == 1000 else "",
                                met=srv < 50 if size == 1000 else None,
                            )
                        )
    return out


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--users", type=int, action="append", help="populations (repeatable)")
    parser.add_argument("--reps", type=int, default=25, help="measured lookups per size")
    parser.add_argument("--skip-postgres", action="store_true")
    parser.add_argument("--skip-sqlite", action="store_true")
    args = parser.parse_args(argv)
    populations = args.users or [10_000, 1_000_000]
    chosen = backends(args.skip_postgres, args.skip_sqlite, say_if_missing=True)

    keep = bool(os.environ.get("LAIWANG_KEEP_BENCH_DATA"))
    rows: list[tuple[Any, ...]] = []
    with bench_root(keep=keep) as root:
        for backend in chosen:
            for n in populations:
                with bench_server(root, backend, MODULE_CONFIG, keep_database=keep) as server:
                    rows.extend(run_one(server, n, args.reps))

    print()
    print("POST /discovery/lookup, every address a registered discoverable user")
    print(f"{'database':<9} {'users':>10} {'addresses':>9} {'server ms':>10} {'client ms':>10}")
    for backend, n, size, server, client, _count, _p95 in rows:
        print(f"{backend:<9} {n:>10,} {size:>9,} {server:>10.1f} {client:>10.1f}")
    print()
    if len(populations) > 1:
        small, large = min(populations), max(populations)
        print(f"growth from {small:,} to {large:,} users (server median ratio), per request size:")
        for backend in chosen:
            at = {(n, size): server for b, n, size, server, *_ in rows if b == backend}
            ratios = [
                f"{size:,}: x{at[(large, size)] / max(at[(small, size)], 0.5):.2f}"
                for size in SIZES
                if (small, size) in at and (large, size) in at
            ]
            print(f"  {backend}: {', '.join(ratios)}")
        print()
    for backend in chosen:
        at = {(n, size): server for b, n, size, server, *_ in rows if b == backend}
        thousand = [at[(n, 1000)] for n in populations if (n, 1000) in at]
        if thousand:
            verdict = "meets" if max(thousand) < 50 else "MISSES"
            print(
                f"{backend}: 1,000-address median {', '.join(f'{t:.1f}' for t in thousand)} ms"
                f" for {', '.join(f'{n:,}' for n in populations)} users — {verdict} the 50 ms target"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
