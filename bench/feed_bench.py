"""Benchmark of the feed: the first page of `GET /feed` for a user with many acquaintances.

    .venv/bin/python -m bench.feed_bench                      # 100, 500, 1000, 2000, 5000 acquaintances
    .venv/bin/python -m bench.feed_bench --acquaintances 500 --reps 30 --skip-postgres

For each database (SQLite, and PostgreSQL when one answers at 127.0.0.1:5432) it starts a real
Synapse with the module and registers the caller and five real friends. With the server stopped
it seeds the module's tables straight into the database: the caller's acquaintances (the five
friends and N-5 seeded users, both directions), 20 posts of every seeded acquaintance, and as
many posts again by strangers (so that the index holds more than the caller may see). Then it
restarts, the five friends open their timelines (the module joins the caller to them) and post
four messages each, with a few reactions and comments: these 20 real events are the newest, so
the first page (limit 20) is made of real events while the query still ranges over all
N × 20 posts. Seeded posts name event ids that Synapse does not have, and are never shown.

It reports the median processing time Synapse itself logs for `GET /feed?limit=20` (its access
log, millisecond resolution) and the client's round trip, next to plain Synapse's
`GET /rooms/{id}/messages?limit=20` in one of those timelines in the same run, and repeats with
more acquaintances to show the growth. Target: under 100 ms (median) at 500 acquaintances.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import quote

from bench.common import (
    ACQUAINTANCE_COLUMNS,
    NAMES,
    BenchServer,
    acquaintance_rows,
    backends,
    bench_root,
    bench_server,
    median_p95_ms,
    result,
)
from tests.harness.client import MatrixClient, wait_until

LAIWANG = "/_synapse/client/laiwang/v1"
POSTS_EACH = 20
REAL_FRIENDS = 5
REAL_POSTS_EACH = 4
PAGE = 20
# database, acquaintances, posts, feed server/client median ms, plain server/client median ms,
# feed client p95 ms
FeedRow = tuple[str, int, int, float, float, float, float, float]


def seed(server: BenchServer, caller: str, start: int, stop: int, now_ms: int) -> None:
    """Acquaintances start..stop-1 of the caller, their posts, and as many strangers' posts."""
    others = [server.user_id(f"seeded{i}") for i in range(start, stop)]
    strangers = [server.user_id(f"stranger{i}") for i in range(start, stop)]
    pairs = ((caller, other, f"!contact{start + i}:seed") for i, other in enumerate(others))
    server.bulk_insert(
        "laiwang_acquaintances", ACQUAINTANCE_COLUMNS, acquaintance_rows(pairs, now_ms)
    )

    def posts(users: list[str], prefix: str) -> Iterator[tuple[str, str, str, int]]:
        for i, user in enumerate(users):
            room = f"!{prefix}{start + i}:seed"
            for p in range(POSTS_EACH):
                # Older than any real post: spread over the last 30 days.
                ts = (
                    now_ms - 3_600_000 - ((start + i) * POSTS_EACH + p) * 97_000 % (30 * 86_400_000)
                )
                yield (f"${prefix}{start + i}_{p}", room, user, ts)

    columns = ("event_id", "room_id", "owner", "ts")
    server.bulk_insert("laiwang_timeline_posts", columns, posts(others, "post"))
    server.bulk_insert("laiwang_timeline_posts", columns, posts(strangers, "noise"))


def joined(client: MatrixClient, room_id: str) -> bool:
    return room_id in client.call("GET", "/_matrix/client/v3/joined_rooms")["joined_rooms"]


def measure(client: MatrixClient, path: str, params: dict[str, object], reps: int) -> list[float]:
    times = []
    for rep in range(reps + 3):
        t0 = time.perf_counter()
        r = client.raw("GET", path, params=params)
        elapsed = (time.perf_counter() - t0) * 1000
        r.raise_for_status()
        if rep >= 3:  # three warm-up requests
            times.append(elapsed)
    return times


def run_backend(backend: str, sizes: list[int], reps: int, root: Path) -> list[FeedRow]:
    rows: list[FeedRow] = []
    with bench_server(root, backend) as server:
        caller = server.register("caller")
        friends = [server.register(f"friend{i}") for i in range(REAL_FRIENDS)]
        caller.laiwang("GET", "/feed")  # the module's tables exist once it answered
        server.stop()
        now_ms = int(time.time() * 1000)
        pairs = ((caller.user_id, f.user_id, f"!real{i}:seed") for i, f in enumerate(friends))
        server.bulk_insert(
            "laiwang_acquaintances", ACQUAINTANCE_COLUMNS, acquaintance_rows(pairs, now_ms)
        )
        seeded = REAL_FRIENDS
        real_posts: list[str] = []
        timelines: list[str] = []
        for n in sizes:
            t0 = time.monotonic()
            seed(server, caller.user_id, seeded, n, now_ms)
            seeded = n
            took = time.monotonic() - t0
            server.start()
            if not real_posts:
                for f in friends:
                    room = str(f.laiwang("GET", "/timeline")["room_id"])
                    timelines.append(room)
                    wait_until(partial(joined, caller, room), timeout=60)
                for p in range(REAL_POSTS_EACH):
                    for f, room in zip(friends, timelines, strict=True):
                        real_posts.append(f.send_text(room, f"real post {p}"))
                for event_id, room in zip(real_posts[:REAL_FRIENDS], timelines, strict=True):
                    caller.send(
                        room,
                        {
                            "m.relates_to": {
                                "rel_type": "m.annotation",
                                "event_id": event_id,
                                "key": "👍",
                            }
                        },
                        "m.reaction",
                    )
                wait_until(
                    lambda: (
                        len(caller.laiwang("GET", "/feed", params={"limit": PAGE})["chunk"]) == PAGE
                    )
                )
            page = caller.laiwang("GET", "/feed", params={"limit": PAGE})
            assert {c["event_id"] for c in page["chunk"]} == set(real_posts), (
                "first page is not the real posts"
            )
            assert "next_batch" in page
            offset = server.log_offset()
            feed_client = measure(caller, LAIWANG + "/feed", {"limit": PAGE}, reps)
            msgs_path = f"/_matrix/client/v3/rooms/{quote(timelines[0])}/messages"
            plain_client = measure(caller, msgs_path, {"dir": "b", "limit": PAGE}, reps)
            time.sleep(0.5)  # let the access log lines land
            feed_server = server.processed_ms(offset, "GET", LAIWANG + "/feed")[3:]
            plain_server = server.processed_ms(offset, "GET", "/_matrix/client/v3/rooms/")[3:]
            row = (
                backend,
                n,
                n * POSTS_EACH,
                statistics.median(feed_server),
                statistics.median(feed_client),
                statistics.median(plain_server),
                statistics.median(plain_client),
                median_p95_ms([ms / 1000 for ms in feed_client])[1],
            )
            rows.append(row)
            print(
                f"  {backend} {n:>5} acquaintances ({n * POSTS_EACH:,} posts, seeded in {took:.1f}s):"
                f" /feed server {row[3]:.1f} ms, client {row[4]:.1f} ms;"
                f" plain /messages server {row[5]:.1f} ms, client {row[6]:.1f} ms",
                flush=True,
            )
            server.stop()
    return rows


def collect(quick: bool, sqlite_only: bool = False) -> list[dict[str, Any]]:
    sizes, reps = ([100, 500, 1000], 10) if quick else ([100, 500, 1000, 2000, 5000], 30)
    out: list[dict[str, Any]] = []
    with bench_root("laiwang-feed-bench-") as root:
        for backend in backends(skip_postgres=sqlite_only):
            for _, n, posts, fs, fc, _ps, pc, p95 in run_backend(backend, sizes, reps, root):
                out.append(
                    result(
                        "feed",
                        f"GET /feed?limit={PAGE}, first page",
                        NAMES[backend],
                        size=n,
                        median_ms=fc,
                        p95_ms=p95,
                        n=reps,
                        posts=posts,
                        server_median_ms=fs,
                        plain_messages_ms=pc,
                        target="median < 100 ms" if n == 500 else "",
                        met=fc < 100 if n == 500 else None,
                    )
                )
    return out


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--acquaintances", type=int, action="append", help="sizes (repeatable)")
    parser.add_argument("--reps", type=int, default=30, help="measured requests per size")
    parser.add_argument("--skip-postgres", action="store_true")
    args = parser.parse_args(argv)
    sizes = sorted(args.acquaintances or [100, 500, 1000, 2000, 5000])
    if sizes[0] <= REAL_FRIENDS:
        parser.error(f"sizes must be above {REAL_FRIENDS}")
    chosen = backends(skip_postgres=args.skip_postgres, say_if_missing=True)

    rows: list[FeedRow] = []
    with bench_root() as root:
        for backend in chosen:
            rows.extend(run_backend(backend, sizes, args.reps, root))

    print()
    print(f"GET /feed?limit={PAGE}, first page (medians; plain = GET /messages?limit={PAGE})")
    print(
        f"{'database':<9} {'acq.':>6} {'posts':>7} {'feed srv ms':>11} {'feed cli ms':>11}"
        f" {'plain srv ms':>12} {'plain cli ms':>12} {'ratio':>6}"
    )
    for backend, n, posts, fs, fc, ps, pc, _ in rows:
        ratio = fc / pc if pc else float("nan")
        print(
            f"{backend:<9} {n:>6} {posts:>7,} {fs:>11.1f} {fc:>11.1f} {ps:>12.1f} {pc:>12.1f}"
            f" {ratio:>6.2f}"
        )
    print()
    for backend in chosen:
        at = {n: fc for b, n, _, _, fc, *_ in rows if b == backend}
        if 500 in at:
            verdict = "meets" if at[500] < 100 else "MISSES"
            print(
                f"{backend}: 500 acquaintances, first page {at[500]:.1f} ms — {verdict} the 100 ms target"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
