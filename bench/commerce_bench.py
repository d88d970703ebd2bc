"""Benchmark of the commerce side: a real Synapse with the module and the real commerce mock.

    .venv/bin/python -m bench.commerce_bench                 # SQLite, and PostgreSQL if one answers
    .venv/bin/python -m bench.commerce_bench --rounds 100 --sqlite-only

Interleaved round by round in the same run, on the same server, so that drift hits both alike:

1. Provider pay end to end (`POST /aa/requests`, then `POST …/pay` with `method: provider`: the
   module checks both linked accounts at the mock, charges it with an idempotency key and sends
   the payment event with the signed receipt) against sending two plain messages. Target: at
   most 1.5 times (medians).
2. `POST /shares/item` (the card read from the mock, the image already copied) against one plain
   message. Target: at most 1.3 times (medians).
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable
from typing import Any

from bench.common import BenchServer, backends, bench_root, bench_server, result, timed
from devtools.commerce import MockProcess

API_KEY = "bench-commerce-api-key-0123456789abcdef"


def interleaved(
    a: Callable[[], Any], b: Callable[[], Any], rounds: int, out: list[list[float]] | None = None
) -> tuple[float, float]:
    """Median seconds of `a` and of `b`, alternating which goes first (all of them appended to
    `out`, when given)."""
    for _ in range(10):  # warm caches and connections
        a()
        b()
    times: dict[Any, list[float]] = {a: [], b: []}
    for i in range(rounds):
        for fn in (a, b) if i % 2 else (b, a):
            times[fn].append(timed(fn))
    if out is not None:
        out += [times[a], times[b]]
    return statistics.median(times[a]), statistics.median(times[b])


def run(server: BenchServer, mock: MockProcess, rounds: int) -> list[dict[str, Any]]:
    shop = mock.client()
    alice, bob = server.register("alice"), server.register("bob")
    for user in (alice, bob):
        created = shop.post("/v1/accounts", {"display_name": user.user_id})
        user.laiwang("POST", "/commerce/link", {"token": created["link_token"]})
    room = alice.create_room(preset="public_chat")
    bob.join(room)
    people = [alice.user_id, bob.user_id]

    def provider_flow() -> None:
        r = alice.laiwang("POST", "/aa/requests", {"room_id": room, "title": "Dinner",
                          "currency": "CNY", "total": 10000, "participants": people})  # fmt: skip
        bob.laiwang("POST", f"/aa/requests/{room}/{r['event_id']}/pay", {"method": "provider"})

    def two_messages() -> None:
        alice.send_text(room, "Dinner was 100, 50 each")
        bob.send_text(room, "Paid")

    raw: list[list[float]] = []
    pay, plain2 = interleaved(provider_flow, two_messages, rounds, raw)
    print(
        f"[{server.name}] provider pay end to end: {pay * 1000:.1f} ms median vs two plain "
        f"messages {plain2 * 1000:.1f} ms -> ratio {pay / plain2:.2f}; target <= 1.5, "
        f"{rounds} rounds"
    )

    def item_share() -> None:
        alice.laiwang("POST", "/shares/item", {"room_id": room, "item_id": "item3"})

    def one_message() -> None:
        alice.send_text(room, "Look at this tea")

    share, plain1 = interleaved(item_share, one_message, rounds, raw)
    print(
        f"[{server.name}] item share: {share * 1000:.1f} ms median vs one plain message "
        f"{plain1 * 1000:.1f} ms -> ratio {share / plain1:.2f}; target <= 1.3, {rounds} rounds"
    )
    return [
        result("commerce", "provider pay end to end / two plain messages", server.name, raw[0],
               target="ratio <= 1.5", met=pay / plain2 <= 1.5, ratio=pay / plain2,
               plain_median_ms=plain2 * 1000),
        result("commerce", "item share / one plain message", server.name, raw[2],
               target="ratio <= 1.3", met=share / plain1 <= 1.3, ratio=share / plain1,
               plain_median_ms=plain1 * 1000),
    ]  # fmt: skip


def collect(quick: bool, sqlite_only: bool = False) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    with bench_root("laiwang-commerce-bench-") as root:
        mock = MockProcess(root / "mock", api_key=API_KEY).start()
        try:
            for backend in backends(skip_postgres=sqlite_only):
                with bench_server(root, backend, _config(mock)) as server:
                    rows += run(server, mock, 20 if quick else 100)
        finally:
            mock.stop()
    return rows


def _config(mock: MockProcess) -> dict[str, Any]:
    return {
        "commerce": {"base_url": mock.base_url, "api_key": API_KEY},
        "payment_providers": {"laiwang-pay": {"verify_key": mock.print_("--print-verify-key")}},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--sqlite-only", action="store_true")
    args = parser.parse_args()
    with bench_root("laiwang-commerce-bench-") as root:
        mock = MockProcess(root / "mock", api_key=API_KEY).start()
        try:
            config = _config(mock)
            for backend in backends(skip_postgres=args.sqlite_only):
                with bench_server(root, backend, config) as server:
                    run(server, mock, args.rounds)
        finally:
            mock.stop()


if __name__ == "__main__":
    main()
