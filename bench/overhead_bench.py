"""The module's cost on ordinary Matrix traffic: Synapse with the module against Synapse without.

    .venv/bin/python -m bench.overhead_bench                 # SQLite, and PostgreSQL if one answers
    .venv/bin/python -m bench.overhead_bench --rounds 50 --users 20 --sqlite-only

Two homeservers are started in the same run on the same database engine: one with the module,
one with `modules: []` (plain Synapse, as tests/harness/servers.py's AttackerHomeserver). Each
gets the same `--users` users, each with a public room of their own; on the module's server each
user is an acquaintance of the next (seeded in its index), so that their invites are allowed, as
they are on plain Synapse. Then, round by round, one user after another (so caches are not all
warm for one user) does on both servers, in an order that alternates every round so that drift
and the other server's background work hit both alike:

- send: a plain text message in their room (`PUT /send`);
- sync: an incremental `/sync?timeout=0` from their last token (after the message: not empty);
- join: a join of the next user's public room (the leave after it is not timed);
- invite: an invite of the next user into their room (the invitee's rejection is not timed).

Reported: each operation's median and p95 client round trip on both servers and the ratio of the
medians. Target: at most 1.02 times plain Synapse. On a shared 2-core machine a single run's
ratios move by a few percent either way; the median of the per-round ratios is given too.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import (
    ACQUAINTANCE_COLUMNS,
    BenchServer,
    acquaintance_rows,
    backends,
    bench_root,
    bench_server,
    median_p95_ms,
    result,
)
from tests.harness.client import MatrixClient

OPERATIONS = ("send", "sync", "join", "invite")
TARGET = 1.02


class Traffic:
    """The users of one server and the four operations on them."""

    def __init__(self, server: BenchServer, users: int):
        self.server = server
        self.users: list[MatrixClient] = [server.register(f"user{i}") for i in range(users)]
        self.rooms = [u.create_room(preset="public_chat") for u in self.users]
        self.tokens: dict[str, str] = {}
        for user in self.users:
            self.tokens[user.user_id] = self._sync(user, None)["next_batch"]

    def _sync(self, user: MatrixClient, since: str | None) -> dict[str, Any]:
        params: dict[str, Any] = {"timeout": 0}
        if since is not None:
            params["since"] = since
        return user.call("GET", "/_matrix/client/v3/sync", params=params)

    def op(self, name: str, i: int) -> Callable[[], None]:
        """The timed part of operation `name` by user `i` (the untimed clean-up runs after)."""
        n = len(self.users)
        user, room = self.users[i % n], self.rooms[i % n]
        nxt, next_room = self.users[(i + 1) % n], self.rooms[(i + 1) % n]
        if name == "send":
            return lambda: None if user.send_text(room, f"hello {i}") else None
        if name == "sync":

            def sync() -> None:
                self.tokens[user.user_id] = self._sync(user, self.tokens[user.user_id])[
                    "next_batch"
                ]

            return sync
        if name == "join":
            return lambda: None if user.join(next_room) else None
        return lambda: user.invite(room, nxt.user_id)

    def cleanup(self, name: str, i: int) -> None:
        n = len(self.users)
        if name == "join":
            self.users[i % n].leave(self.rooms[(i + 1) % n])
        elif name == "invite":
            self.users[(i + 1) % n].leave(self.rooms[i % n])  # rejects the invite


def seed_acquaintances(server: BenchServer, traffic: Traffic) -> None:
    """Each user an acquaintance of the next, in the module's index (the module's own tables
    exist once it has answered a request)."""
    traffic.users[0].laiwang("GET", "/contacts")
    ids = [u.user_id for u in traffic.users]
    pairs = ((ids[i], ids[(i + 1) % len(ids)], "!seeded:bench") for i in range(len(ids)))
    with server.database() as db:
        db.insert("laiwang_acquaintances", ACQUAINTANCE_COLUMNS, acquaintance_rows(pairs, 1))


def compare(
    module: Traffic,
    plain: Traffic,
    rounds: int,
    warmup: int,
    operations: tuple[str, ...] = OPERATIONS,
) -> dict[str, dict[str, list[float]]]:
    """Seconds of each operation on each server, interleaved, alternating which goes first."""
    times: dict[str, dict[str, list[float]]] = {
        op: {"module": [], "plain": []} for op in operations
    }
    sides = (("module", module), ("plain", plain))
    for r in range(warmup + rounds):
        for op in operations:
            order = sides if r % 2 else sides[::-1]
            for side, traffic in order:
                fn = traffic.op(op, r)
                start = time.perf_counter()
                fn()
                elapsed = time.perf_counter() - start
                traffic.cleanup(op, r)
                if r >= warmup:
                    times[op][side].append(elapsed)
    return times


def run_backend(
    root: Path, backend: str, users: int, rounds: int, operations: tuple[str, ...] = OPERATIONS
) -> list[dict[str, Any]]:
    with (
        bench_server(root, backend) as with_module,
        bench_server(root, backend, extra={"modules": []}) as without,
    ):
        module, plain = Traffic(with_module, users), Traffic(without, users)
        seed_acquaintances(with_module, module)
        times = compare(module, plain, rounds, min(10, rounds), operations)
    rows = []
    for op in operations:
        m, p = times[op]["module"], times[op]["plain"]
        ratio = statistics.median(m) / statistics.median(p)
        paired = statistics.median(a / b for a, b in zip(m, p, strict=True))
        pm, pp = median_p95_ms(m), median_p95_ms(p)
        rows.append(
            result(
                "overhead",
                f"{op}: with module / plain Synapse",
                NAMES_BY_BACKEND[backend],
                m,
                target=f"ratio <= {TARGET}",
                met=ratio <= TARGET,
                ratio=ratio,
                paired_ratio=paired,
                plain_median_ms=pp[0],
                plain_p95_ms=pp[1],
                users=users,
            )
        )
        print(
            f"[{backend}] {op:>6}: module {pm[0]:.1f} ms (p95 {pm[1]:.1f}), plain {pp[0]:.1f} ms"
            f" (p95 {pp[1]:.1f}) -> ratio {ratio:.3f}, per-round {paired:.3f};"
            f" target <= {TARGET}",
            flush=True,
        )
    return rows


NAMES_BY_BACKEND = {"sqlite": "SQLite", "postgres": "PostgreSQL"}


def collect(quick: bool, sqlite_only: bool = False) -> list[dict[str, Any]]:
    rounds, users = (100, 20) if quick else (300, 50)
    rows: list[dict[str, Any]] = []
    with bench_root("laiwang-overhead-bench-") as root:
        for backend in backends(skip_postgres=sqlite_only or quick):
            rows += run_backend(root, backend, users, rounds)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--sqlite-only", action="store_true")
    parser.add_argument("--op", action="append", choices=OPERATIONS, help="only these")
    args = parser.parse_args()
    with bench_root("laiwang-overhead-bench-") as root:
        for backend in backends(skip_postgres=args.sqlite_only):
            run_backend(root, backend, args.users, args.rounds, tuple(args.op or OPERATIONS))


if __name__ == "__main__":
    main()
