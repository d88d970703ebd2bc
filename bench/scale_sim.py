"""What one user action costs, measured small and extrapolated to 10M users on 1,000 servers.

    .venv/bin/python -m bench.scale_sim                  # measure on a real Synapse, then simulate
    .venv/bin/python -m bench.scale_sim --simulate-only  # the simulation, with the figures below

1. Measured (one real Synapse with the module, SQLite): the database rows each action writes,
   counted over every table before and after (Synapse's and the module's), the events it
   creates and their bytes (canonical JSON as stored), for: becoming acquainted (request,
   join, and the timeline invites and joins that follow), a post in a timeline with k local
   readers (k = 1, 4, 16: what grows with k), and joining a cluster.
2. Simulated: a population of `--users` users on `--servers` servers. Server sizes and
   acquaintance degrees are heavy-tailed (server sizes Zipf with exponent 1; degrees lognormal
   with median 80 and sigma 1.0, capped at 5,000: most people know a few dozen, a few know
   thousands). An acquaintance is on server s with probability proportional to s's size. From
   a sample of users it computes, per action, the federation transactions (one per remote
   server in the room: Matrix sends each event once per destination) and bytes sent, and for
   the whole network the event copies every server stores for the rooms the design creates:
   one contact room per acquainted pair, one timeline room per user joined by each of their
   acquaintances. Every server in a room keeps that room's events and current state.

The figures printed are the inputs and outputs of docs/scaling.md.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sqlite3
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

# Measured with `python -m bench.scale_sim` (SQLite, Synapse 1.163); see docs/scaling.md. The
# simulation uses these unless a fresh measurement is given (`--measured FILE`).
MEASURED: dict[str, Any] = {
    "acquaint": {"rows": 154, "events": 9, "bytes": 6580},
    "post": {"rows_base": 9.9, "rows_per_reader": 1.07, "events": 1, "bytes": 625},
    "cluster_join": {"rows": 40, "events": 2, "bytes": 2273},
}


# --- 1. measured on a real homeserver ---


def _counts(db: Path) -> dict[str, int]:
    conn = sqlite3.connect(db, timeout=60)
    try:
        tables = [
            r[0]
            for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            if not r[0].startswith("sqlite_")
        ]
        return {t: conn.execute(f'SELECT COUNT(*) FROM "{t}"').fetchone()[0] for t in tables}
    finally:
        conn.close()


def _event_bytes(db: Path, since_rows: int) -> tuple[int, int]:
    conn = sqlite3.connect(db, timeout=60)
    try:
        rows = conn.execute(
            "SELECT LENGTH(json) FROM event_json LIMIT -1 OFFSET ?", (since_rows,)
        ).fetchall()
        return len(rows), sum(r[0] for r in rows)
    finally:
        conn.close()


def delta(db: Path, action: Callable[[], Any], settle: float = 2.0) -> dict[str, Any]:
    """Rows written (all tables, net of deletes), events created and their bytes."""
    before = _counts(db)
    action()
    time.sleep(settle)  # the module's on_new_event work and background joins
    after = _counts(db)
    events, size = _event_bytes(db, before.get("event_json", 0))
    changed = {t: after[t] - before.get(t, 0) for t in after if after[t] != before.get(t, 0)}
    return {"rows": sum(changed.values()), "events": events, "bytes": size, "tables": changed}


def measure() -> dict[str, Any]:
    from bench.common import bench_root, bench_server
    from tests.harness.social import make_acquainted

    out: dict[str, Any] = {}
    with bench_root("laiwang-scale-") as root, bench_server(root, "sqlite") as server:
        db = server.spec.directory / "homeserver.db"
        owner = server.register("owner")
        readers = [server.register(f"reader{i}") for i in range(16)]
        first = readers[0]
        out["acquaint"] = delta(db, lambda: None if make_acquainted(owner, first) else None, 5.0)
        for r in readers[1:]:
            make_acquainted(owner, r)
        time.sleep(5)
        timeline = str(owner.laiwang("GET", "/timeline")["room_id"])
        posts = {}
        joined = set(owner.joined_members(timeline))
        for k in (1, 4, 16):
            # A fresh owner whose timeline has k readers.
            poster = server.register(f"poster{k}")
            for r in readers[:k]:
                make_acquainted(poster, r)
            room = str(poster.laiwang("GET", "/timeline")["room_id"])
            time.sleep(3)

            def post(poster: Any = poster, room: str = room) -> None:
                poster.send_text(room, "a post")

            runs = [delta(db, post, 1.0) for _ in range(3)]
            posts[k] = {
                "rows": statistics.median(r["rows"] for r in runs),
                "events": runs[0]["events"],
                "bytes": runs[0]["bytes"],
                "tables": runs[-1]["tables"],
                "members": len(poster.joined_members(room)),
            }
        per_reader = (posts[16]["rows"] - posts[1]["rows"]) / 15
        out["post"] = {
            "rows_base": posts[1]["rows"] - per_reader,
            "rows_per_reader": per_reader,
            "events": posts[1]["events"],
            "bytes": posts[1]["bytes"],
            "by_readers": posts,
            "owner_timeline_members": len(joined),
        }
        cluster = str(owner.laiwang("POST", "/clusters", {"topic": "scale"})["room_id"])

        def join() -> None:
            first.laiwang("POST", f"/clusters/{quote(cluster)}/join", {})

        out["cluster_join"] = delta(db, join)
    return out


# --- 2. simulated at scale ---


def zipf_sizes(users: int, servers: int) -> list[int]:
    weights = [1 / (i + 1) for i in range(servers)]
    total = sum(weights)
    return [max(1, round(users * w / total)) for w in weights]


def degree(rng: random.Random) -> int:
    return min(5000, max(1, round(rng.lognormvariate(math.log(80), 1.0))))


def distinct_servers(k: int, shares: list[float]) -> float:
    """Expected number of servers among k acquaintances, each on server s with P = shares[s]."""
    return sum(1 - (1 - p) ** k for p in shares)


def simulate(users: int, servers: int, sample: int, measured: dict[str, Any]) -> dict[str, Any]:
    rng = random.Random(16)
    sizes = zipf_sizes(users, servers)
    shares = [s / sum(sizes) for s in sizes]
    degrees = sorted(degree(rng) for _ in range(sample))
    # Distinct servers for a degree, tabulated on a grid (exact formula, interpolated).
    grid = sorted({1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000})
    table = {k: distinct_servers(k, shares) for k in grid}

    def servers_for(k: int) -> float:
        lo = max(g for g in grid if g <= k)
        hi = min(g for g in grid if g >= k)
        if lo == hi:
            return table[lo]
        return table[lo] + (table[hi] - table[lo]) * (k - lo) / (hi - lo)

    mean_k = statistics.fmean(degrees)
    post = measured["post"]
    fed_post = [servers_for(k) for k in degrees]  # destinations of one post (incl. home)
    # Storage: a timeline room of a user with k readers lives on D(k) servers, each holding
    # its k+1 member events; a contact room lives on 1 or 2 servers with its ~events.
    timeline_copies = statistics.fmean((k + 1) * servers_for(k) for k in degrees) * users
    pairs = mean_k * users / 2
    contact_events = measured["acquaint"]["events"]
    contact_copies = pairs * contact_events * (2 - sum(p * p for p in shares))
    p50, p99 = degrees[len(degrees) // 2], degrees[int(len(degrees) * 0.99)]
    median_share = sorted(shares)[len(shares) // 2]

    def on_server(p: float, weight: Callable[[int], float]) -> float:
        """Over all users: the expected `weight(k)` of the timelines server (share p) is in."""
        return statistics.fmean((1 - (1 - p) ** k) * weight(k) for k in degrees) * users

    biggest = sizes[0]
    return {
        "users": users,
        "servers": servers,
        "largest_server_users": biggest,
        "median_server_users": sorted(sizes)[len(sizes) // 2],
        "degree_mean": mean_k,
        "degree_p50": p50,
        "degree_p99": p99,
        "degree_max": degrees[-1],
        "post_destinations_p50": servers_for(p50) - 1,
        "post_destinations_p99": servers_for(p99) - 1,
        "post_destinations_max": servers_for(degrees[-1]) - 1,
        "post_bytes_p99": (servers_for(p99) - 1) * post["bytes"],
        "post_rows_p99": servers_for(p99) * post["rows_base"] + p99 * post["rows_per_reader"],
        "post_destinations_mean": statistics.fmean(fed_post) - 1,
        "acquainted_pairs": pairs,
        "contact_rooms": pairs,
        "contact_event_copies": contact_copies,
        "timeline_member_event_copies": timeline_copies,
        "timeline_rooms_on_largest_server": on_server(shares[0], lambda k: 1),
        "timeline_member_events_on_largest_server": on_server(shares[0], lambda k: k + 1),
        "timeline_rooms_on_median_server": on_server(median_share, lambda k: 1),
        "timeline_member_events_on_median_server": on_server(median_share, lambda k: k + 1),
        "rooms_per_user_p99": 2 * p99,
        # The change proposed in docs/scaling.md: one member per server in a timeline room.
        "per_server_membership_event_copies": statistics.fmean(servers_for(k) ** 2 for k in degrees)
        * users,
        # The alternative: one timeline room per (owner, reader server), holding the owner and
        # that server's readers, kept on those two servers only.
        "per_reader_server_rooms_member_event_copies": statistics.fmean(
            2 * (k + servers_for(k)) for k in degrees
        )
        * users,
        "per_reader_server_rooms_member_events_on_median_server": median_share
        * users
        * statistics.fmean(2 * k for k in degrees),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--users", type=int, default=10_000_000)
    parser.add_argument("--servers", type=int, default=1000)
    parser.add_argument("--sample", type=int, default=200_000)
    parser.add_argument("--simulate-only", action="store_true")
    parser.add_argument("--measured", type=Path, help="a JSON file written by a measuring run")
    parser.add_argument("--out", type=Path, help="write the measurement and simulation here")
    args = parser.parse_args()
    measured = MEASURED
    if args.measured:
        measured = json.loads(args.measured.read_text())["measured"]
    elif not args.simulate_only:
        measured = measure()
    print(json.dumps({k: {x: y for x, y in v.items() if x != "tables"} for k, v in measured.items()},
                     indent=1, default=str))  # fmt: skip
    sim = simulate(args.users, args.servers, args.sample, measured)
    for key, value in sim.items():
        print(f"{key:>36}: {value:,.1f}" if isinstance(value, float) else f"{key:>36}: {value:,}")
    if args.out:
        args.out.write_text(json.dumps({"measured": measured, "simulated": sim}, indent=1,
                                       default=str))  # fmt: skip


if __name__ == "__main__":
    main()
