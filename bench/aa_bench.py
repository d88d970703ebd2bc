"""Benchmark of AA payments on a real Synapse with the module.

    .venv/bin/python -m bench.aa_bench                   # SQLite, and PostgreSQL if one answers
    .venv/bin/python -m bench.aa_bench --rounds 300 --bills 10000 --sqlite-only

1. The request + payment flow (`POST /aa/requests`, then `POST …/pay` in cash) against sending
   two plain messages, in the same run on the same server, interleaved round by round so that
   drift hits both alike. Target: the AA flow costs at most 1.3 times the two messages.
2. `GET /aa/balances` for a user with 10,000 bills: the ledger tables are seeded straight in the
   database (requests, shares, ledger events and the balances they add up to), spread over 1,000
   counterparties and three currencies; the median round trip of the endpoint is reported.
   Target: median under 50 ms.
"""

from __future__ import annotations

import argparse
import random
import secrets
import statistics
from collections import defaultdict
from typing import Any

from bench.common import BenchServer, for_each_backend, median_p95_ms, timed

CURRENCIES = ("CNY", "JPY", "USD")


def bench_flow(server: BenchServer, rounds: int) -> dict[str, float]:
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
        "aa_median_ms": statistics.median(aa_times) * 1000,
        "plain_median_ms": statistics.median(plain_times) * 1000,
        "ratio_median": statistics.median(aa_times) / statistics.median(plain_times),
        "ratio_total": sum(aa_times) / sum(plain_times),
    }


def seed_rows(user_id: str, server_name: str, bills: int) -> dict[str, list[tuple[Any, ...]]]:
    """10,000 bills of `user_id`: half as payee, half as a participant, all open, unpaid."""
    rng = random.Random(4)
    room = f"!bench:{server_name}"
    rows: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
    net: dict[tuple[str, str, str], int] = defaultdict(int)
    for i in range(bills):
        other = f"@friend{rng.randrange(1000)}:{server_name}"
        currency = CURRENCIES[i % len(CURRENCIES)]
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


def bench_balances(server: BenchServer, bills: int, requests: int) -> dict[str, float]:
    carol = server.register("payer")
    carol.laiwang("GET", "/aa/balances")  # the schema exists once the module has answered
    rows = seed_rows(carol.user_id, server.spec.server_name, bills)
    with server.database() as db:  # seeded while the server runs
        for table, columns in COLUMNS.items():
            db.insert(table, columns, rows[table])
    entries = len(carol.laiwang("GET", "/aa/balances")["balances"])
    for _ in range(5):
        carol.laiwang("GET", "/aa/balances")
    median_ms, p95_ms = median_p95_ms(
        [timed(lambda: carol.laiwang("GET", "/aa/balances")) for _ in range(requests)]
    )
    return {"bills": bills, "balance_entries": entries, "median_ms": median_ms, "p95_ms": p95_ms}


def run(server: BenchServer, args: argparse.Namespace) -> None:
    name = server.name
    flow = bench_flow(server, args.rounds)
    print(
        f"[{name}] request+payment flow: {flow['aa_median_ms']:.1f} ms median vs two plain "
        f"messages {flow['plain_median_ms']:.1f} ms -> ratio {flow['ratio_median']:.2f} "
        f"(medians), {flow['ratio_total']:.2f} (totals); target <= 1.3, {args.rounds} rounds"
    )
    bal = bench_balances(server, args.bills, args.requests)
    print(
        f"[{name}] GET /aa/balances, {bal['bills']} bills ({bal['balance_entries']} entries): "
        f"median {bal['median_ms']:.1f} ms, p95 {bal['p95_ms']:.1f} ms; target median < 50 ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--bills", type=int, default=10000)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--sqlite-only", action="store_true")
    args = parser.parse_args()
    for_each_backend(lambda server: run(server, args), args.sqlite_only, "laiwang-aa-bench-")


if __name__ == "__main__":
    main()
