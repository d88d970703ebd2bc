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
import io
import os
import random
import re
import secrets
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import requests

from laiwang_module.devserver import HomeserverSpec, SynapseProcess, free_port, register_user
from rooms.discovery import lookup_hash
from tests.harness.servers import (
    create_postgres_database,
    drop_postgres_database,
    postgres_available,
)

LAIWANG = "/_synapse/client/laiwang/v1"
SIZES = (100, 1000, 5000)
WARMUP = 5  # requests per size before measuring
_PROCESSED = re.compile(
    r"Processed request: (\d+\.\d+)sec/.* db=\((\d+\.\d+)sec/(\d+\.\d+)sec/\d+\)"
    r'.*"POST /_synapse/client/laiwang/v1/discovery/lookup '
)


def msisdn_of(i: int) -> str:
    return f"86139{i:08d}"


def user_id_of(i: int, server_name: str) -> str:
    return f"@bench{i}:{server_name}"


def seed_sqlite(db: Path, n: int, server_name: str) -> None:
    now = int(time.time() * 1000)
    conn = sqlite3.connect(db)
    try:
        with conn:
            conn.executemany(
                "INSERT INTO users (name, creation_ts) VALUES (?, ?)",
                ((user_id_of(i, server_name), now // 1000) for i in range(n)),
            )
            conn.executemany(
                "INSERT INTO user_threepids (user_id, medium, address, validated_at, added_at)"
                " VALUES (?, 'msisdn', ?, ?, ?)",
                ((user_id_of(i, server_name), msisdn_of(i), now, now) for i in range(n)),
            )
            _drop_index(conn.cursor())
    finally:
        conn.close()


def seed_postgres(args: dict[str, Any], n: int, server_name: str) -> None:
    import psycopg2

    now = int(time.time() * 1000)
    conn = psycopg2.connect(
        host=args["host"], port=args["port"], user=args["user"], dbname=args["database"]
    )
    try:
        with conn, conn.cursor() as cur:
            users = io.StringIO(
                "".join(f"{user_id_of(i, server_name)}\t{now // 1000}\n" for i in range(n))
            )
            cur.copy_expert("COPY users (name, creation_ts) FROM STDIN", users)
            threepids = io.StringIO(
                "".join(
                    f"{user_id_of(i, server_name)}\tmsisdn\t{msisdn_of(i)}\t{now}\t{now}\n"
                    for i in range(n)
                )
            )
            cur.copy_expert(
                "COPY user_threepids (user_id, medium, address, validated_at, added_at) FROM STDIN",
                threepids,
            )
            _drop_index(cur)
        with conn.cursor() as cur:
            conn.autocommit = True
            cur.execute("ANALYZE")
    finally:
        conn.close()


def _drop_index(cur: Any) -> None:
    # Seeding bypassed Synapse's 3pid callbacks: let the module build its index from scratch.
    cur.execute("DELETE FROM laiwang_discovery_hashes")
    cur.execute("DELETE FROM laiwang_discovery_state")


def index_built(spec: HomeserverSpec) -> bool:
    query = "SELECT built FROM laiwang_discovery_state"
    if spec.database is None:
        conn = sqlite3.connect(spec.directory / "homeserver.db", timeout=30)
        try:
            row = conn.execute(query).fetchone()
        finally:
            conn.close()
    else:
        import psycopg2

        a = spec.database
        pg = psycopg2.connect(host=a["host"], port=a["port"], user=a["user"], dbname=a["database"])
        try:
            with pg.cursor() as cur:
                cur.execute(query)
                row = cur.fetchone()
        finally:
            pg.close()
    return bool(row and row[0])


def server_times(spec: HomeserverSpec, since: int) -> list[float]:
    text = (spec.directory / "homeserver.log").read_text(errors="replace")[since:]
    return [float(m.group(1)) * 1000 for m in _PROCESSED.finditer(text)]


def log_size(spec: HomeserverSpec) -> int:
    return len((spec.directory / "homeserver.log").read_text(errors="replace"))


def run_one(backend: str, n: int, reps: int, root: Path) -> list[tuple[Any, ...]]:
    db = create_postgres_database() if backend == "postgres" else None
    port = free_port()
    spec = HomeserverSpec(
        directory=root / f"{backend}-{n}",
        client_port=port,
        server_name=f"localhost:{port}",
        database=db,
        relaxed_ratelimits=True,
        module_config={
            "discovery": {"max_addresses_per_request": 5000, "max_addresses_per_day": 10**9}
        },
    )
    proc = SynapseProcess(spec)
    rows: list[tuple[Any, ...]] = []
    try:
        proc.start()
        proc.wait_ready()
        caller = register_user(
            spec.base_url, spec.registration_shared_secret, "caller", secrets.token_hex(8)
        )
        proc.stop()

        t0 = time.monotonic()
        if db is None:
            seed_sqlite(spec.directory / "homeserver.db", n, spec.server_name)
        else:
            seed_postgres(db, n, spec.server_name)
        seeded = time.monotonic() - t0

        t0 = time.monotonic()
        proc.start()
        proc.wait_ready(timeout=600)
        while not index_built(spec):
            time.sleep(0.5)
        built = time.monotonic() - t0
        print(
            f"  {backend} {n:>9,} users: seeded in {seeded:.1f}s, index of {n:,} numbers built"
            f" in {built:.1f}s after restart",
            flush=True,
        )

        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {caller['access_token']}"
        pepper = session.get(spec.base_url + LAIWANG + "/discovery/hash_details").json()[
            "lookup_pepper"
        ]
        rng = random.Random(42)
        time.sleep(5)  # let Synapse's own start-up jobs settle before measuring
        for size in SIZES:
            client_ms: list[float] = []
            since = log_size(spec)
            for rep in range(reps + WARMUP):
                picks = rng.sample(range(n), size)
                body = {
                    "algorithm": "sha256",
                    "pepper": pepper,
                    "addresses": [lookup_hash(msisdn_of(i), pepper) for i in picks],
                }
                t0 = time.perf_counter()
                r = session.post(spec.base_url + LAIWANG + "/discovery/lookup", json=body)
                elapsed = (time.perf_counter() - t0) * 1000
                r.raise_for_status()
                found = len(r.json()["mappings"])
                assert found == size, f"expected {size} matches, got {found}"
                if rep >= WARMUP:
                    client_ms.append(elapsed)
            time.sleep(0.5)  # let the access log line of the last request land
            server_ms = server_times(spec, since)[WARMUP:]
            rows.append(
                (
                    backend,
                    n,
                    size,
                    statistics.median(server_ms),
                    statistics.median(client_ms),
                    len(server_ms),
                )
            )
            print(
                f"  {backend} {n:>9,} users, {size:>5} addresses: server median "
                f"{rows[-1][3]:.1f} ms, client round trip {rows[-1][4]:.1f} ms",
                flush=True,
            )
    finally:
        proc.stop()
        if db is not None and not os.environ.get("LAIWANG_KEEP_BENCH_DATA"):
            drop_postgres_database(db)
    return rows


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--users", type=int, action="append", help="populations (repeatable)")
    parser.add_argument("--reps", type=int, default=25, help="measured lookups per size")
    parser.add_argument("--skip-postgres", action="store_true")
    parser.add_argument("--skip-sqlite", action="store_true")
    args = parser.parse_args(argv)
    populations = args.users or [10_000, 1_000_000]
    backends = [] if args.skip_sqlite else ["sqlite"]
    if not args.skip_postgres and postgres_available():
        backends.append("postgres")
    elif not args.skip_postgres:
        print("PostgreSQL not reachable at 127.0.0.1:5432: SQLite only")

    root = Path(tempfile.mkdtemp(prefix="laiwang-bench-"))
    rows: list[tuple[Any, ...]] = []
    try:
        for backend in backends:
            for n in populations:
                rows.extend(run_one(backend, n, args.reps, root))
    finally:
        if os.environ.get("LAIWANG_KEEP_BENCH_DATA"):
            print(f"bench data kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)

    print()
    print("POST /discovery/lookup, every address a registered discoverable user")
    print(f"{'database':<9} {'users':>10} {'addresses':>9} {'server ms':>10} {'client ms':>10}")
    for backend, n, size, server, client, _count in rows:
        print(f"{backend:<9} {n:>10,} {size:>9,} {server:>10.1f} {client:>10.1f}")
    print()
    if len(populations) > 1:
        small, large = min(populations), max(populations)
        print(f"growth from {small:,} to {large:,} users (server median ratio), per request size:")
        for backend in backends:
            at = {(n, size): server for b, n, size, server, _, _ in rows if b == backend}
            ratios = [
                f"{size:,}: x{at[(large, size)] / max(at[(small, size)], 0.5):.2f}"
                for size in SIZES
                if (small, size) in at and (large, size) in at
            ]
            print(f"  {backend}: {', '.join(ratios)}")
        print()
    for backend in backends:
        at = {(n, size): server for b, n, size, server, _, _ in rows if b == backend}
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
