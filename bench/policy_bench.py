"""Benchmark of the acquaintances-only invite policy with up to 1,000,000 acquaintance pairs.

    .venv/bin/python -m bench.policy_bench                 # 10,000 and 1,000,000 pairs
    .venv/bin/python -m bench.policy_bench --pairs 10000 --reps 50

For each database (SQLite, and PostgreSQL when one answers at 127.0.0.1:5432) and each number
of pairs, it starts Synapse with the module, registers `--reps` inviters, a friend of each and zed
(a stranger), stops it, bulk-loads the acquaintance index (each pair twice, as the module keeps
it, filled up with other pairs), restarts, and each inviter (many users: no one user's caches
are warm for the others) creates two rooms (untimed) and invites: their friend into the first
(allowed; the pair's first check, a database lookup), the same friend into the second (allowed,
from the cache), and zed (refused with a 403: no contact request).

The figure is what the user waits for: the HTTP round trip of `POST /rooms/{id}/invite`. Next to
it, the policy's own share, which the module logs at DEBUG for each decision (`invite policy …
in X ms`). Target: the policy check under 1 ms, the same at 10,000 and 1,000,000 pairs (one
primary-key lookup); the invite round trip is compared with plain Synapse's in
bench/overhead_bench.py.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.common import (
    ACQUAINTANCE_COLUMNS,
    acquaintance_rows,
    backends,
    bench_root,
    bench_server,
    result,
    summary,
)
from tests.harness.client import MatrixClient, MatrixError

_DECISION = re.compile(r"invite policy \S+ -> (\S+): (allowed|refused) in ([0-9.]+) ms")


def run(backend: str, pairs: int, reps: int, root: Path) -> list[dict[str, Any]]:
    with bench_server(root, backend) as server:
        inviters = [server.register(f"inviter{i}") for i in range(reps)]
        friends = [server.register(f"friend{i}") for i in range(reps)]
        zed = server.register("zed")
        server.stop()
        now = int(time.time() * 1000)
        room = "!seeded:bench"

        def index_pairs() -> Iterator[tuple[str, str, str]]:
            for inviter, friend in zip(inviters, friends, strict=True):
                yield (inviter.user_id, friend.user_id, room)
            for i in range(pairs - reps):
                yield (server.user_id(f"p{i}a"), server.user_id(f"p{i}b"), room)

        t0 = time.monotonic()
        n = server.bulk_insert(
            "laiwang_acquaintances", ACQUAINTANCE_COLUMNS, acquaintance_rows(index_pairs(), now)
        )
        print(f"  {backend}: {n:,} index rows ({pairs:,} pairs) in {time.monotonic() - t0:.1f}s")
        server.start()
        rooms = [(u.create_room(preset="private_chat"), u.create_room(preset="private_chat"))
                 for u in inviters]  # fmt: skip

        def invite(inviter: MatrixClient, room_id: str, invitee: str, allowed: bool) -> float:
            start = time.perf_counter()
            try:
                inviter.invite(room_id, invitee)
                assert allowed, f"the stranger's invite went through: {invitee}"
            except MatrixError as e:
                assert not allowed and e.status == 403, e
            return time.perf_counter() - start

        timings: dict[str, list[float]] = {"first": [], "again": [], "refused": []}
        policy: dict[str, list[float]] = {}
        trio = list(zip(inviters, friends, rooms, strict=True))
        rounds = {
            "first": [(u, r[0], f.user_id, True) for u, f, r in trio],
            "again": [(u, r[1], f.user_id, True) for u, f, r in trio],
            "refused": [(u, r[0], zed.user_id, False) for u, _, r in trio],
        }
        for key, invites in rounds.items():
            offset = server.log_offset()
            timings[key] = [invite(*args) for args in invites]
            time.sleep(0.5)  # let the DEBUG lines land in the log
            policy[key] = server.logged(offset, _DECISION, group=3)
        rows = []
        for key, label in (
            ("first", "allowed, first check of the pair"),
            ("again", "allowed, pair cached"),
            ("refused", "refused (stranger, 403)"),
        ):
            logged = policy[key]
            policy_ms = statistics.median(logged) if logged else None
            rows.append(
                result(
                    "policy",
                    f"POST /invite round trip, {label}",
                    server.name,
                    timings[key],
                    size=pairs,
                    target="policy check < 1 ms" if policy_ms is not None else "",
                    met=None if policy_ms is None else policy_ms < 1,
                    policy_check_ms=policy_ms,
                    series=label,
                )
            )
            print(f"  {backend} {pairs:>9,} pairs, {label:>33}: round trip "
                  f"{summary([t * 1000 for t in timings[key]])}; policy "
                  f"{summary(logged) if logged else 'not logged'}")  # fmt: skip
        return rows


def collect(quick: bool, sqlite_only: bool = False) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    sizes, reps = ([10_000, 100_000], 30) if quick else ([10_000, 1_000_000], 100)
    with bench_root("laiwang-policy-bench-") as root:
        for backend in backends(skip_postgres=sqlite_only):
            for pairs in sizes:
                rows += run(backend, pairs, reps, root)
    return rows


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--pairs", type=int, action="append", help="pair counts (repeatable)")
    parser.add_argument("--reps", type=int, default=100)
    args = parser.parse_args(argv)
    with bench_root() as root:
        for backend in backends():
            for pairs in args.pairs or [10_000, 1_000_000]:
                run(backend, pairs, args.reps, root)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
