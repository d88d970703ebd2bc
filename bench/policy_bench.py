"""Benchmark of the acquaintances-only invite policy with up to 1,000,000 acquaintance pairs.

    .venv/bin/python -m bench.policy_bench                 # 10,000 and 1,000,000 pairs
    .venv/bin/python -m bench.policy_bench --pairs 10000 --reps 50

For each database (SQLite, and PostgreSQL when one answers at 127.0.0.1:5432) and each number
of pairs, it starts Synapse with the module, registers alice, her friends and zed (a stranger),
stops it, bulk-loads the acquaintance index (each pair twice, as the module keeps it, filled up
with other pairs), restarts, and sends invites: alice → each friend once (allowed; the pair is not
cached yet), alice → the same friend again (allowed, from the cache) and alice → zed (refused: no
contact request). The figure is the policy's own time, which the module logs at DEBUG for
each decision (`invite policy … in X ms`), taken as the median over the invites.

Target: under 1 ms, the same at 10,000 and 1,000,000 pairs (one primary-key lookup).
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from bench.common import (
    ACQUAINTANCE_COLUMNS,
    acquaintance_rows,
    backends,
    bench_root,
    bench_server,
    summary,
)
from tests.harness.client import MatrixError

_DECISION = re.compile(r"invite policy \S+ -> (\S+): (allowed|refused) in ([0-9.]+) ms")


def run(backend: str, pairs: int, reps: int, root: Path) -> None:
    with bench_server(root, backend) as server:
        alice, zed = server.register("alice"), server.register("zed")
        friends = [server.register(f"friend{i}") for i in range(reps)]
        server.stop()
        now = int(time.time() * 1000)
        room = "!seeded:bench"

        def index_pairs() -> Iterator[tuple[str, str, str]]:
            for friend in friends:
                yield (alice.user_id, friend.user_id, room)
            for i in range(pairs - len(friends)):
                yield (server.user_id(f"p{i}a"), server.user_id(f"p{i}b"), room)

        t0 = time.monotonic()
        n = server.bulk_insert(
            "laiwang_acquaintances", ACQUAINTANCE_COLUMNS, acquaintance_rows(index_pairs(), now)
        )
        print(f"  {backend}: {n:,} index rows ({pairs:,} pairs) in {time.monotonic() - t0:.1f}s")
        server.start()

        def decisions(invites: list[tuple[str, bool]]) -> list[float]:
            offset = server.log_offset()
            for invitee, allowed in invites:
                room_id = alice.create_room(preset="private_chat")
                try:
                    alice.invite(room_id, invitee)
                    assert allowed, f"the stranger's invite went through: {invitee}"
                except MatrixError as e:
                    assert not allowed and e.status == 403, e
            time.sleep(0.5)
            return server.logged(offset, _DECISION, group=3)

        # Each friend once: the pair is not in the cache yet (a database lookup).
        first = decisions([(f.user_id, True) for f in friends])
        # The same friend again and again: served from the cache.
        again = decisions([(friends[0].user_id, True)] * reps)
        refused = decisions([(zed.user_id, False)] * reps)
        for label, values in (
            ("allowed, first check of the pair", first),
            ("allowed, pair cached", again[3:]),
            ("refused (stranger)", refused[3:]),
        ):
            print(f"  {backend} {pairs:>9,} pairs, {label:>33}: {summary(values)}")


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
