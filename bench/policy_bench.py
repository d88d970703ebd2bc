"""Benchmark of the acquaintances-only invite policy with up to 1,000,000 acquaintance pairs.

    .venv/bin/python -m bench.policy_bench                 # 10,000 and 1,000,000 pairs
    .venv/bin/python -m bench.policy_bench --pairs 10000 --reps 50

For each database (SQLite, and PostgreSQL when one answers at 127.0.0.1:5432) and each number
of pairs, it starts Synapse with the module, registers alice, bob (alice's acquaintance) and zed
(a stranger), stops it, bulk-loads the acquaintance index (each pair twice, as the module keeps
it), restarts, and sends invites: alice → bob (allowed: acquainted) and alice → zed (refused:
no contact request). The figure is the policy's own time, which the module logs at DEBUG for
each decision (`invite policy … in X ms`), taken as the median over the invites.

Target: under 1 ms, the same at 10,000 and 1,000,000 pairs (one primary-key lookup).
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from bench.common import backends, bench_server, summary
from tests.harness.client import MatrixError

_DECISION = re.compile(r"invite policy \S+ -> (\S+): (allowed|refused) in ([0-9.]+) ms")


def run(backend: str, pairs: int, reps: int, root: Path) -> None:
    with bench_server(root, backend) as server:
        alice, bob, zed = (server.register(n) for n in ("alice", "bob", "zed"))
        server.stop()
        now = int(time.time() * 1000)
        room = "!seeded:bench"

        def rows() -> Iterator[tuple[str, str, str, str, int]]:
            for a, b in ((alice.user_id, bob.user_id),):
                yield (a, b, room, "request", now)
                yield (b, a, room, "request", now)
            for i in range(pairs - 1):
                a, b = server.user_id(f"p{i}a"), server.user_id(f"p{i}b")
                yield (a, b, room, "request", now)
                yield (b, a, room, "request", now)

        t0 = time.monotonic()
        n = server.bulk_insert(
            "laiwang_acquaintances",
            ("user_id", "other_id", "room_id", "source", "since_ts"),
            rows(),
        )
        print(f"  {backend}: {n:,} index rows ({pairs:,} pairs) in {time.monotonic() - t0:.1f}s")
        server.start()
        offset = server.log_offset()
        for _ in range(reps):
            room_id = alice.create_room(preset="private_chat")
            alice.invite(room_id, bob.user_id)
            try:
                alice.invite(room_id, zed.user_id)
                raise AssertionError("the stranger's invite went through")
            except MatrixError as e:
                assert e.status == 403, e
        time.sleep(0.5)
        times: dict[str, list[float]] = {"allowed": [], "refused": []}
        for m in _DECISION.finditer(server.log_since(offset)):
            times[m.group(2)].append(float(m.group(3)))
        for outcome, values in times.items():
            # Drop the first decisions: caches warm up.
            print(f"  {backend} {pairs:>9,} pairs, {outcome:>7}: {summary(values[3:])}")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--pairs", type=int, action="append", help="pair counts (repeatable)")
    parser.add_argument("--reps", type=int, default=100)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="laiwang-bench-") as tmp:
        for backend in backends():
            for pairs in args.pairs or [10_000, 1_000_000]:
                run(backend, pairs, args.reps, Path(tmp))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
