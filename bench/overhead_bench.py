"""The module's cost on ordinary Matrix traffic: Synapse with the module against Synapse without.

    .venv/bin/python -m bench.overhead_bench                 # SQLite, and PostgreSQL if one answers
    .venv/bin/python -m bench.overhead_bench --rounds 50 --users 20 --sqlite-only

Three homeservers are started in the same run on the same database engine: one with the module,
one with `modules: []` (plain Synapse, as tests/harness/servers.py's AttackerHomeserver) and one
with bench/noop_module.py, which registers the very Synapse callbacks laiwang registers and
returns at once from each ("noop hooks"): it is what Synapse's own hook machinery costs, so that
laiwang / noop hooks is the module's own work and noop hooks / plain is Synapse's. Each server
gets the same `--users` users, each with a public room of their own; on the module's server each
user is an acquaintance of the next (seeded in its index), so that their invites are allowed, as
they are on the other two. Then, round by round, one user after another (so caches are not all
warm for one user) does on all three servers, in an order that goes through the six orders of the
three in turn so that drift and the others' background work hit all alike:

- send: a plain text message in their room (`PUT /send`);
- sync: an incremental `/sync?timeout=0` from their last token (after the message: not empty);
- join: a join of the next user's public room (the leave after it is not timed);
- invite: an invite of the next user into their room (the invitee's rejection is not timed).

Reported: each operation's median and p95 client round trip on the three servers and the ratios
of the medians (laiwang / plain, noop hooks / plain, laiwang / noop hooks). Target: laiwang at
most 1.02 times plain Synapse. On a shared 2-core machine a single run's ratios move by a few
percent either way: the median of the per-round ratios is given too, and the ratios of each
third of the rounds in turn (or, with `--repeats`, of each whole comparison on fresh servers;
the headline figures then pool the repeats' requests).
"""

from __future__ import annotations

import argparse
import itertools
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
SIDES = ("module", "noop", "plain")
# Synapse with the module's callbacks registered and nothing done in them (bench/noop_module.py).
NOOP_MODULES = {"modules": [{"module": "bench.noop_module.NoopHooksModule", "config": {}}]}


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
    servers: dict[str, Traffic],
    rounds: int,
    warmup: int,
    operations: tuple[str, ...] = OPERATIONS,
) -> dict[str, dict[str, list[float]]]:
    """Seconds of each operation on each server, interleaved, the order of the servers going
    through all their permutations round by round (each is first, middle and last alike)."""
    times: dict[str, dict[str, list[float]]] = {
        op: {side: [] for side in servers} for op in operations
    }
    orders = list(itertools.permutations(servers.items()))
    for r in range(warmup + rounds):
        for k, op in enumerate(operations):
            for side, traffic in orders[(r + k) % len(orders)]:
                fn = traffic.op(op, r)
                start = time.perf_counter()
                fn()
                elapsed = time.perf_counter() - start
                traffic.cleanup(op, r)
                if r >= warmup:
                    times[op][side].append(elapsed)
    return times


def measure_once(
    root: Path, backend: str, users: int, rounds: int, operations: tuple[str, ...]
) -> dict[str, dict[str, list[float]]]:
    """One comparison on three fresh servers."""
    with (
        bench_server(root, backend) as with_module,
        bench_server(root, backend, extra={"modules": []}) as without,
        bench_server(root, backend, extra=NOOP_MODULES) as noop,
    ):
        servers = {
            "module": Traffic(with_module, users),
            "noop": Traffic(noop, users),
            "plain": Traffic(without, users),
        }
        seed_acquaintances(with_module, servers["module"])
        return compare(servers, rounds, min(10, rounds), operations)


def _thirds(times: dict[str, list[float]]) -> list[dict[str, list[float]]]:
    """The rounds in three consecutive blocks (the same rounds on every server)."""
    k = len(next(iter(times.values()))) // 3
    return [{side: t[i * k : (i + 1) * k] for side, t in times.items()} for i in range(3)]


def _ratio(a: list[float], b: list[float]) -> float:
    return statistics.median(a) / statistics.median(b)


def _paired(a: list[float], b: list[float]) -> float:
    return statistics.median(x / y for x, y in zip(a, b, strict=True))


def run_backend(
    root: Path,
    backend: str,
    users: int,
    rounds: int,
    operations: tuple[str, ...] = OPERATIONS,
    repeats: int = 1,
) -> list[dict[str, Any]]:
    runs = []
    for i in range(repeats):
        runs.append(measure_once(root, backend, users, rounds, operations))
        if repeats > 1:
            for op in operations:
                t = runs[-1][op]
                print(
                    f"[{backend}] repeat {i + 1}/{repeats} {op:>6}:"
                    f" laiwang/plain {_ratio(t['module'], t['plain']):.3f},"
                    f" noop/plain {_ratio(t['noop'], t['plain']):.3f},"
                    f" laiwang/noop {_ratio(t['module'], t['noop']):.3f}",
                    flush=True,
                )
    rows = []
    for op in operations:
        # Pooled over the repeats; ratios are of medians, paired ones per round.
        m, n, p = ([x for run in runs for x in run[op][side]] for side in SIDES)
        ratio, noop_ratio, own = _ratio(m, p), _ratio(n, p), _ratio(m, n)
        # The spread: each repeat's ratios, or (one repeat) each third of its rounds in turn.
        blocks = [run[op] for run in runs] if repeats > 1 else _thirds(runs[0][op])
        each = [(_ratio(b["module"], b["plain"]), _ratio(b["noop"], b["plain"]),
                 _ratio(b["module"], b["noop"])) for b in blocks]  # fmt: skip
        pm, pn, pp = median_p95_ms(m), median_p95_ms(n), median_p95_ms(p)
        extra: dict[str, Any] = {
            "block": "repeat" if repeats > 1 else "third of the rounds",
            **{f"{k} per block": " ".join(f"{e[i]:.3f}" for e in each)
               for i, k in enumerate(("laiwang/plain", "noop/plain", "laiwang/noop"))},
        }  # fmt: skip
        rows.append(
            result(
                "overhead",
                f"{op}: with module / plain Synapse",
                NAMES_BY_BACKEND[backend],
                m,
                target=f"ratio <= {TARGET}",
                met=ratio <= TARGET,
                ratio=ratio,
                paired_ratio=_paired(m, p),
                noop_hooks_ratio=noop_ratio,
                noop_hooks_paired_ratio=_paired(n, p),
                module_own_ratio=own,
                module_own_paired_ratio=_paired(m, n),
                plain_median_ms=pp[0],
                plain_p95_ms=pp[1],
                noop_median_ms=pn[0],
                noop_p95_ms=pn[1],
                users=users,
                rounds=rounds,
                repeats=repeats,
                **extra,
            )
        )
        print(
            f"[{backend}] {op:>6}: laiwang {pm[0]:.1f} ms (p95 {pm[1]:.1f}), noop hooks"
            f" {pn[0]:.1f} ms (p95 {pn[1]:.1f}), plain {pp[0]:.1f} ms (p95 {pp[1]:.1f})"
            f" -> laiwang/plain {ratio:.3f} (per-round {_paired(m, p):.3f}), noop/plain"
            f" {noop_ratio:.3f} (per-round {_paired(n, p):.3f}), laiwang/noop {own:.3f}"
            f" (per-round {_paired(m, n):.3f}); target laiwang/plain <= {TARGET}",
            flush=True,
        )
    return rows


NAMES_BY_BACKEND = {"sqlite": "SQLite", "postgres": "PostgreSQL"}


def collect(quick: bool, sqlite_only: bool = False) -> list[dict[str, Any]]:
    rounds, users, repeats = (100, 20, 1) if quick else (300, 50, 1)
    rows: list[dict[str, Any]] = []
    with bench_root("laiwang-overhead-bench-") as root:
        for backend in backends(skip_postgres=sqlite_only):
            rows += run_backend(root, backend, users, rounds, repeats=repeats)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--sqlite-only", action="store_true")
    parser.add_argument("--op", action="append", choices=OPERATIONS, help="only these")
    parser.add_argument("--repeats", type=int, default=1, help="comparisons on fresh servers")
    args = parser.parse_args()
    with bench_root("laiwang-overhead-bench-") as root:
        for backend in backends(skip_postgres=args.sqlite_only):
            ops = tuple(args.op or OPERATIONS)
            run_backend(root, backend, args.users, args.rounds, ops, args.repeats)


if __name__ == "__main__":
    main()
