"""Benchmark of discovery across servers: a lookup whose numbers are on a peer, against the same
lookup answered by the caller's own server.

    .venv/bin/python -m bench.discovery_peers_bench                  # 1,000,000 users a server
    .venv/bin/python -m bench.discovery_peers_bench --users 10000 --reps 10

Two federating Synapses with the module on SQLite, A and B, each other's `discovery.peers`.
As in bench/discovery_bench.py, the users and their msisdn 3pids are bulk-inserted straight into
Synapse's tables while the servers are stopped (`n` on each: 86139… on A, 86138… on B, all
discoverable), and the module builds its indexes on restart; B also builds its OPRF set for A
(A's job asks for it at start), and A fetches it once. Then the caller on A looks up books of
1,000 numbers (every one a registered user): all on A (the one-server lookup: A's index
answers, no peer is asked), all on B (blinding, B's evaluation, the local match against B's
set, B's resolve of all 1,000 matches), and half and half. Each match is also written to the
caller's address book. The median processing time Synapse logs for each request on A is
reported, with the client's round trip.

Target: the all-on-B lookup at most 2× the all-on-A one (median).
"""

from __future__ import annotations

import argparse
import itertools
import os
import random
import statistics
import sys
import time
from typing import Any

from bench.common import BenchServer, bench_root
from bench.discovery_bench import LOOKUP_PATH
from rooms.discovery import lookup_hash

WARMUP = 5
SIZE = 1000
KINDS = ("local", "peer", "peer-warm", "mixed")


def msisdn_on(server: int, i: int) -> str:
    return f"8613{9 - server}{i:08d}"


def seed(server: BenchServer, index: int, n: int) -> None:
    """`n` users with a validated msisdn each, no discovery index (with the server stopped)."""
    now = int(time.time() * 1000)
    users = [server.user_id(f"bench{i}") for i in range(n)]
    with server.database() as db:
        db.insert("users", ("name", "creation_ts"), ((u, now // 1000) for u in users))
        db.insert(
            "user_threepids",
            ("user_id", "medium", "address", "validated_at", "added_at"),
            ((u, "msisdn", msisdn_on(index, i), now, now) for i, u in enumerate(users)),
        )
        db.execute("DELETE FROM laiwang_discovery_hashes")
        db.execute("DELETE FROM laiwang_discovery_state")
        db.execute("DELETE FROM laiwang_discovery_peer_prfs")
        db.execute("DELETE FROM laiwang_discovery_peer_state")


def query(server: BenchServer, sql: str) -> Any:
    with server.database() as db:
        row = db.fetchone(sql)
    return row[0] if row else None


def wait_for(what: str, check: Any, timeout: float = 3600) -> float:
    t0 = time.monotonic()
    while not check():
        if time.monotonic() - t0 > timeout:
            raise RuntimeError(f"{what}: not done after {timeout:.0f}s")
        time.sleep(1)
    return time.monotonic() - t0


def run(root: Any, n: int, reps: int) -> list[tuple[Any, ...]]:
    config = {
        "max_addresses_per_request": SIZE,
        "max_addresses_per_day": 10**9,
        "peer_max_addresses_per_day": 10**9,
        "peer_timeout": "60s",
        "peer_set_ttl": "1d",  # fetched once; the fetch is timed on its own
    }
    a = BenchServer(root, "sqlite", federation=True)
    b = BenchServer(root, "sqlite", federation=True)
    a.spec.module_config = {"discovery": {**config, "peers": [b.spec.server_name]}}
    b.spec.module_config = {"discovery": {**config, "peers": [a.spec.server_name]}}
    rows: list[tuple[Any, ...]] = []
    try:
        a.start()
        b.start()
        caller = a.register("caller")
        a.stop()
        b.stop()
        t0 = time.monotonic()
        seed(a, 0, n)
        seed(b, 1, n)
        print(f"  {n:,} users on each server seeded in {time.monotonic() - t0:.1f}s", flush=True)

        t0 = time.monotonic()
        b.start()
        a.start()
        built = "SELECT built FROM laiwang_discovery_state"
        wait_for("A's index", lambda: query(a, built))
        wait_for("B's index", lambda: query(b, built))
        local_built = time.monotonic() - t0
        peer_built = wait_for(
            "B's set for A", lambda: query(b, "SELECT built FROM laiwang_discovery_peer_state")
        )
        print(
            f"  indexes built {local_built:.1f}s after restart; B's OPRF set for A built"
            f" {peer_built:.1f}s later",
            flush=True,
        )

        pepper = caller.laiwang("GET", "/discovery/hash_details")["lookup_pepper"]
        rng = random.Random(42)

        # Peer numbers are drawn without repeats (A remembers the PRF values it learned, so a
        # number looked up again costs no evaluation): "peer" and "mixed" are cold lookups,
        # "peer-warm" repeats one book, as a client re-uploading its address book does.
        pool = list(range(n))
        rng.shuffle(pool)
        warm_book = [msisdn_on(1, i) for i in pool[:SIZE]]
        # (Wraps around when the population is too small for that: warm lookups then.)
        fresh = itertools.cycle(pool[SIZE:])

        def peer_numbers(count: int) -> list[str]:
            return [msisdn_on(1, next(fresh)) for _ in range(count)]

        def body(kind: str) -> dict[str, Any]:
            if kind == "local":
                numbers = [msisdn_on(0, i) for i in rng.sample(range(n), SIZE)]
            elif kind == "peer":
                numbers = peer_numbers(SIZE)
            elif kind == "peer-warm":
                numbers = warm_book
            else:
                half = SIZE // 2
                numbers = [msisdn_on(0, i) for i in rng.sample(range(n), half)] + peer_numbers(
                    SIZE - half
                )
            return {
                "algorithm": "sha256",
                "pepper": pepper,
                "addresses": [lookup_hash(m, pepper) for m in numbers],
            }

        # The first peer lookup waits for A's fetch of B's set (8 bytes a user).
        t0 = time.perf_counter()
        first = caller.laiwang("POST", "/discovery/lookup", body("peer-warm"))
        fetch_s = time.perf_counter() - t0
        print(
            f"  first peer lookup (fetching B's set of {n:,}): {fetch_s:.1f}s,"
            f" {len(first['mappings'])} found, unreachable {first['unreachable_peers']}",
            flush=True,
        )
        time.sleep(3)
        for kind in KINDS:
            client_ms: list[float] = []
            since = a.log_offset()
            for rep in range(reps + WARMUP):
                request = body(kind)
                t0 = time.perf_counter()
                r = caller.laiwang_raw("POST", "/discovery/lookup", request)
                elapsed = (time.perf_counter() - t0) * 1000
                r.raise_for_status()
                reply = r.json()
                assert len(reply["mappings"]) == SIZE, (
                    kind,
                    len(reply["mappings"]),
                    reply.get("unreachable_peers"),
                )
                if rep >= WARMUP:
                    client_ms.append(elapsed)
            time.sleep(0.5)
            server_ms = a.processed_ms(since, "POST", LOOKUP_PATH)[WARMUP:]
            rows.append((n, kind, statistics.median(server_ms), statistics.median(client_ms)))
            print(
                f"  {n:>9,} users a server, 1,000 addresses {kind:>5}: server median"
                f" {rows[-1][2]:.1f} ms, client round trip {rows[-1][3]:.1f} ms",
                flush=True,
            )
    finally:
        a.close()
        b.close()
    return rows


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--users", type=int, action="append", help="users a server (repeatable)")
    parser.add_argument("--reps", type=int, default=25, help="measured lookups per kind")
    args = parser.parse_args(argv)
    populations = args.users or [1_000_000]
    keep = bool(os.environ.get("LAIWANG_KEEP_BENCH_DATA"))
    rows: list[tuple[Any, ...]] = []
    with bench_root(keep=keep) as root:
        for n in populations:
            rows.extend(run(root, n, args.reps))
    print()
    print("POST /discovery/lookup of 1,000 registered numbers, SQLite, two peer servers")
    print(f"{'users/server':>12} {'numbers on':>10} {'server ms':>10} {'client ms':>10}")
    for n, kind, server, client in rows:
        where = {"local": "A", "peer": "B", "peer-warm": "B, again", "mixed": "A+B"}[kind]
        print(f"{n:>12,} {where:>10} {server:>10.1f} {client:>10.1f}")
    print()
    for n in populations:
        at = {kind: server for m, kind, server, _ in rows if m == n}
        if "local" in at and "peer" in at:
            for kind in ("peer", "peer-warm"):
                ratio = at[kind] / max(at["local"], 0.5)
                verdict = "meets" if ratio <= 2 else "MISSES"
                print(f"{n:,} users: {kind}/local x{ratio:.2f} — {verdict} the 2x target")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
