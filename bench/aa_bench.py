"""Benchmark of AA payments on a real Synapse with the module.

    .venv/bin/python -m bench.aa_bench                   # SQLite, and PostgreSQL if one answers
    .venv/bin/python -m bench.aa_bench --rounds 300 --bills 10000 --sqlite-only

1. The request + payment flow (`POST /aa/requests`, then `POST …/pay` in cash) against sending
   two plain messages, in the same run on the same server, interleaved round by round so that
   drift hits both alike. Target: the AA flow costs at most 1.3 times the two messages.
2. `GET /aa/balances` for a user with 10,000 bills: the ledger tables are seeded straight in the
   database (requests, shares, ledger events and the balances they add up to), over 1,000
   counterparties and three currencies, and again (another user) spread over as many
   counterparties as bills allow and 20 currencies; the median round trip of the endpoint is
   reported, also for 1,000 bills (the growth). Target: median under 50 ms.
3. The same after a ledger rebuild: the user also has `--real-bills` real bills in a real room
   (sent through the API), whose ledger an admin rebuilds with `POST /aa/rebuild`; then the
   balances again (their rows now written by the module's own code path, after deletes).
"""

from __future__ import annotations

import argparse
import random
import secrets
import statistics
from collections import defaultdict
from typing import Any

from bench.common import (
    BenchServer,
    backends,
    bench_root,
    bench_server,
    for_each_backend,
    median_p95_ms,
    result,
    timed,
)

CURRENCIES = ("CNY", "JPY", "USD")
MANY_CURRENCIES = ("CNY", "JPY", "USD", "EUR", "GBP", "HKD", "KRW", "SGD", "AUD", "CAD",
                   "CHF", "SEK", "NOK", "DKK", "NZD", "THB", "MYR", "INR", "TWD", "MOP")  # fmt: skip


def bench_flow(server: BenchServer, rounds: int) -> dict[str, Any]:
    alice, bob, carol = (server.register(n) for n in ("alice", "bob", "carol"))
    room = alice.create_room(preset="public_chat")
    bob.join(room)
    carol.join(room)
    people = [alice.user_id, bob.user_id, carol.user_id]

    def aa_flow() -> None:
        r = alice.laiwang("POST", "/aa/requests", {"room_id": room, "title": "Dinner",
                          "currency": "CNY", "total": 10000, "participants": people})  # fmt: skip
        alice.laiwang("POST", f"/aa/requests/{room}/{r['event_id']}/pay",
                      {"method": "cash", "payer": bob.user_id})  # fmt: skip

    def plain() -> None:
        alice.send_text(room, "Dinner was 100, 33.34 each")
        alice.send_text(room, "Bob paid")

    for _ in range(10):  # warm caches and connections
        aa_flow()
        plain()
    aa_times: list[float] = []
    plain_times: list[float] = []
    for i in range(rounds):
        order = (aa_flow, plain) if i % 2 else (plain, aa_flow)
        for fn in order:
            (aa_times if fn is aa_flow else plain_times).append(timed(fn))
    return {
        "aa_times": aa_times,
        "aa_median_ms": statistics.median(aa_times) * 1000,
        "plain_median_ms": statistics.median(plain_times) * 1000,
        "ratio_median": statistics.median(aa_times) / statistics.median(plain_times),
        "ratio_total": sum(aa_times) / sum(plain_times),
    }


def seed_rows(
    user_id: str,
    server_name: str,
    bills: int,
    counterparties: int = 1000,
    currencies: tuple[str, ...] = CURRENCIES,
) -> dict[str, list[tuple[Any, ...]]]:
    """`bills` bills of `user_id`: half as payee, half as a participant, all open, unpaid."""
    rng = random.Random(4)
    room = f"!bench{secrets.token_hex(3)}:{server_name}"
    rows: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
    net: dict[tuple[str, str, str], int] = defaultdict(int)
    for i in range(bills):
        other = f"@friend{rng.randrange(counterparties)}:{server_name}"
        currency = currencies[i % len(currencies)]
        payee, debtor = (user_id, other) if i % 2 else (other, user_id)
        amount = rng.randrange(100, 100000)
        event_id = f"$bench{i}_{secrets.token_hex(4)}"
        rows["laiwang_aa_events"].append((event_id, "request", event_id, "applied"))
        rows["laiwang_aa_requests"].append(
            (event_id, room, payee, f"Bill {i}", currency, 2 * amount, "open", i)
        )
        rows["laiwang_aa_shares"] += [
            (event_id, payee, 0, amount, True),
            (event_id, debtor, 1, amount, False),
        ]
        net[(payee, debtor, currency)] += amount
        net[(debtor, payee, currency)] -= amount
    rows["laiwang_aa_balances"] = [(u, c, cur, n) for (u, c, cur), n in net.items()]
    return rows


COLUMNS = {
    "laiwang_aa_events": ("event_id", "kind", "request_event_id", "outcome"),
    "laiwang_aa_requests": (
        "event_id",
        "room_id",
        "payee",
        "title",
        "currency",
        "total",
        "state",
        "ts",
    ),
    "laiwang_aa_shares": ("request_event_id", "user_id", "position", "amount", "paid"),
    "laiwang_aa_balances": ("user_id", "counterparty", "currency", "net"),
}


def measure_balances(user: Any, requests: int) -> tuple[int, list[float]]:
    entries = len(user.laiwang("GET", "/aa/balances")["balances"])
    for _ in range(5):
        user.laiwang("GET", "/aa/balances")
    return entries, [timed(lambda: user.laiwang("GET", "/aa/balances")) for _ in range(requests)]


def bench_balances(
    server: BenchServer,
    bills: int,
    requests: int,
    counterparties: int = 1000,
    currencies: tuple[str, ...] = CURRENCIES,
    localpart: str = "payer",
) -> dict[str, Any]:
    carol = server.register(localpart)
    carol.laiwang("GET", "/aa/balances")  # the schema exists once the module has answered
    rows = seed_rows(carol.user_id, server.spec.server_name, bills, counterparties, currencies)
    with server.database() as db:  # seeded while the server runs
        for table, columns in COLUMNS.items():
            db.insert(table, columns, rows[table])
    entries, times = measure_balances(carol, requests)
    median_ms, p95_ms = median_p95_ms(times)
    return {"bills": bills, "balance_entries": entries, "median_ms": median_ms,
            "p95_ms": p95_ms, "times": times}  # fmt: skip


def bench_rebuild(server: BenchServer, bills: int, real: int, requests: int) -> dict[str, Any]:
    """Balances of a user with `bills` seeded bills and `real` real ones, after an admin
    rebuilt the real room's ledger."""
    admin = server.register("ledgeradmin", admin=True)
    others = [server.register(f"diner{i}") for i in range(3)]
    room = admin.create_room(preset="public_chat")
    for other in others:
        other.join(room)
    people = [admin.user_id] + [o.user_id for o in others]
    for i in range(real):
        admin.laiwang("POST", "/aa/requests", {"room_id": room, "title": f"Meal {i}",
                      "currency": MANY_CURRENCIES[i % 5], "total": 1000 + i,
                      "participants": people})  # fmt: skip
    rows = seed_rows(admin.user_id, server.spec.server_name, bills, bills, MANY_CURRENCIES)
    with server.database() as db:
        for table, columns in COLUMNS.items():
            db.insert(table, columns, rows[table])
    _, before = measure_balances(admin, requests)
    rebuild_s = timed(lambda: admin.laiwang("POST", "/aa/rebuild", {"room_id": room}))
    entries, after = measure_balances(admin, requests)
    return {"before": before, "after": after, "rebuild_s": rebuild_s, "entries": entries}


def collect(quick: bool, sqlite_only: bool = False) -> list[dict[str, Any]]:
    rounds, requests, real = (30, 30, 30) if quick else (200, 200, 300)
    rows: list[dict[str, Any]] = []
    target = "median < 50 ms"
    with bench_root("laiwang-aa-bench-") as root:
        for backend in backends(skip_postgres=sqlite_only):
            with bench_server(root, backend) as server:
                name = server.name
                flow = bench_flow(server, rounds)
                rows.append(result("aa", "request + cash payment / two plain messages", name,
                                   flow["aa_times"], target="ratio <= 1.3",
                                   met=flow["ratio_median"] <= 1.3,
                                   ratio=flow["ratio_median"],
                                   plain_median_ms=flow["plain_median_ms"]))  # fmt: skip
                for i, (bills, parties, currencies, label) in enumerate((
                    (1000, 1000, CURRENCIES, "1,000 counterparties, 3 currencies"),
                    (10000, 1000, CURRENCIES, "1,000 counterparties, 3 currencies"),
                    (10000, 10000, MANY_CURRENCIES, "up to 10,000 counterparties, 20 currencies"),
                )):  # fmt: skip
                    b = bench_balances(server, bills, requests, parties, currencies, f"payer{i}")
                    rows.append(result("aa", f"GET /aa/balances, {label}", name, b["times"],
                                       size=bills, target=target, met=b["median_ms"] < 50,
                                       series=label, entries=b["balance_entries"]))  # fmt: skip
                r = bench_rebuild(server, 10000, real, requests)
                label = f"after POST /aa/rebuild of a room with {real} real bills"
                for when in ("before", "after"):
                    ms = median_p95_ms(r[when])[0]
                    rows.append(result("aa", f"GET /aa/balances, 10,000 spread bills, {when}"
                                       f" the rebuild ({real} real bills)", name, r[when],
                                       target=target, met=ms < 50,
                                       **({"rebuild_s": r["rebuild_s"], "entries": r["entries"]}
                                          if when == "after" else {})))  # fmt: skip
                del label
    return rows


def run(server: BenchServer, args: argparse.Namespace) -> None:
    name = server.name
    flow = bench_flow(server, args.rounds)
    print(
        f"[{name}] request+payment flow: {flow['aa_median_ms']:.1f} ms median vs two plain "
        f"messages {flow['plain_median_ms']:.1f} ms -> ratio {flow['ratio_median']:.2f} "
        f"(medians), {flow['ratio_total']:.2f} (totals); target <= 1.3, {args.rounds} rounds"
    )
    bal = bench_balances(server, args.bills, args.requests, args.counterparties)
    print(
        f"[{name}] GET /aa/balances, {bal['bills']} bills ({bal['balance_entries']} entries): "
        f"median {bal['median_ms']:.1f} ms, p95 {bal['p95_ms']:.1f} ms; target median < 50 ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--bills", type=int, default=10000)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--counterparties", type=int, default=1000)
    parser.add_argument("--sqlite-only", action="store_true")
    args = parser.parse_args()
    for_each_backend(lambda server: run(server, args), args.sqlite_only, "laiwang-aa-bench-")


if __name__ == "__main__":
    main()
