"""Load run: 100 concurrent clients for 60 s against the worker deployment on PostgreSQL.

    python -m bench.load                       # 100 clients, 60 s
    python -m bench.load --clients 20 --seconds 10

Starts Synapse's main process and two generic workers (PostgreSQL + Redis, the module on each,
as config/workers/ describes; tests/harness/workers.py), registers the users in groups of four
(each group acquainted around its first member and sharing a room for bills), then drives every
client in a loop of mixed operations, each request going to the next worker in turn:

- `aa_request`: `POST /aa/requests` in the group room, the caller the payee, one other member
  the participant; half of the bills are then paid (`aa_pay`, `POST …/pay` in cash), a tenth
  of those paid twice at once through both workers (the same payment must come back);
- `post`: a message on the caller's timeline;
- `feed`: `GET /feed`.

Then it checks what the run left: every call answered without an error, one payment event per
paid bill (none lost, none doubled), and every user's `GET /aa/balances` equal to a recomputation
from the bills and payments the rooms hold. It prints the throughput and latency percentiles per
operation; docs/load.md keeps a report.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import platform
import random
import secrets
import statistics
import sys
import tempfile
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp

from tests.harness.client import MatrixClient
from tests.harness.servers import postgres_available, redis_available, remove_tree, sql
from tests.harness.social import make_acquainted
from tests.harness.workers import WorkerDeployment

LAIWANG = "/_synapse/client/laiwang/v1"
AA = "org.laiwang.aa."
GROUP = 4
WEIGHTS = {"aa": 3, "post": 3, "feed": 4}


class Client:
    """One simulated user: an aiohttp session whose requests alternate between the workers."""

    def __init__(self, user: MatrixClient, urls: list[str], session: aiohttp.ClientSession):
        self.user_id = user.user_id
        self._token = user.access_token
        self._urls = itertools.cycle(urls)
        self._session = session
        self.timeline = ""
        self.room = ""
        self.others: list[str] = []

    async def call(self, stats: Stats, op: str, method: str, path: str,
                   body: Any = None, url: str | None = None) -> Any:  # fmt: skip
        base = url or next(self._urls)
        while True:
            start = time.perf_counter()
            try:
                async with self._session.request(
                    method,
                    base + path,
                    json=body,
                    headers={"Authorization": f"Bearer {self._token}"},
                ) as r:
                    answer = await r.json(content_type=None)
                    status = r.status
            except Exception as e:  # a refused connection or a timeout counts as an error
                stats.error(op, repr(e))
                return None
            stats.record(op, time.perf_counter() - start)
            if status == 429 and op == "aa_pay" and "retry_after_ms" in answer:
                # The same payment under way on another worker: retry for its result, as the
                # answer asks (the contract: paying twice returns the first payment).
                stats.retries[op] += 1
                await asyncio.sleep(answer["retry_after_ms"] / 1000)
                continue
            if status >= 400:
                stats.error(op, f"{status} {answer}")
                return None
            return answer


class Stats:
    def __init__(self) -> None:
        self.latencies: dict[str, list[float]] = defaultdict(list)
        self.errors: Counter[str] = Counter()
        self.retries: Counter[str] = Counter()
        self.error_samples: list[str] = []

    def record(self, op: str, seconds: float) -> None:
        self.latencies[op].append(seconds)

    def error(self, op: str, what: str) -> None:
        self.errors[op] += 1
        if len(self.error_samples) < 10:
            self.error_samples.append(f"{op}: {what[:300]}")


class Ledger:
    """What the driver did: bills asked and payments made, for the checks after the run."""

    def __init__(self) -> None:
        self.requests: dict[str, tuple[str, str, dict[str, int]]] = {}  # id → room, payee, shares
        self.payments: dict[str, str] = {}  # request id → payment event id
        self.double_pays = 0


async def client_loop(c: Client, stats: Stats, ledger: Ledger, urls: list[str],
                      deadline: float, rng: random.Random, double_pay: float) -> None:  # fmt: skip
    ops = [op for op, w in WEIGHTS.items() for _ in range(w)]
    while time.monotonic() < deadline:
        op = rng.choice(ops)
        if op == "feed":
            await c.call(stats, "feed", "GET", LAIWANG + "/feed")
        elif op == "post":
            txn = secrets.token_hex(8)
            path = f"/_matrix/client/v3/rooms/{quote(c.timeline)}/send/m.room.message/{txn}"
            await c.call(stats, "post", "PUT", path, {"msgtype": "m.text", "body": "load " + txn})
        else:
            other = rng.choice(c.others)
            total = 2 * rng.randint(1, 5000)
            body = {"room_id": c.room, "title": "Load", "currency": "CNY", "total": total,
                    "split": "equal", "participants": [c.user_id, other]}  # fmt: skip
            asked = await c.call(stats, "aa_request", "POST", LAIWANG + "/aa/requests", body)
            if asked is None:
                continue
            request_id = asked["event_id"]
            ledger.requests[request_id] = (c.room, c.user_id, asked["shares"])
            if rng.random() < 0.5:
                continue
            pay_path = f"{LAIWANG}/aa/requests/{quote(c.room)}/{quote(request_id)}/pay"
            pay = {"method": "cash", "payer": other}
            if rng.random() < double_pay:
                # The same payment through both workers at once: one payment, the same answer.
                answers = await asyncio.gather(
                    *(c.call(stats, "aa_pay", "POST", pay_path, pay, url=u) for u in urls)
                )
                ids = {a["event_id"] for a in answers if a is not None}
                if len(ids) > 1:
                    stats.error("aa_pay", f"two payments for one share: {ids}")
                ledger.double_pays += 1
            else:
                answers = [await c.call(stats, "aa_pay", "POST", pay_path, pay)]
            paid = next((a for a in answers if a is not None), None)
            if paid is not None:
                ledger.payments[request_id] = paid["event_id"]


def setup(d: WorkerDeployment, count: int) -> list[tuple[MatrixClient, str, str, list[str]]]:
    """`count` users in groups of four: the first acquainted with the others, a shared room;
    returns (user, timeline, group room, the group's other members)."""
    users = [d.new_user(f"load{i}") for i in range(count)]
    groups = [users[i : i + GROUP] for i in range(0, count, GROUP)]
    groups = [g for g in groups if len(g) >= 2]

    def prepare(group: list[MatrixClient]) -> list[tuple[MatrixClient, str, str, list[str]]]:
        timelines = [u.laiwang("GET", "/timeline")["room_id"] for u in group]
        for other in group[1:]:
            make_acquainted(group[0], other)
        room = group[0].create_room(preset="public_chat")
        for other in group[1:]:
            other.join(room)
        ids = [u.user_id for u in group]
        return [
            (u, tl, room, [i for i in ids if i != u.user_id])
            for u, tl in zip(group, timelines, strict=True)
        ]

    with ThreadPoolExecutor(8) as pool:
        return [row for rows in pool.map(prepare, groups) for row in rows]


def room_events(user: MatrixClient, room: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    token = None
    while True:
        params: dict[str, Any] = {"dir": "b", "limit": 1000}
        if token:
            params["from"] = token
        page = user.call("GET", f"/_matrix/client/v3/rooms/{quote(room)}/messages", params=params)
        events.extend(page.get("chunk", []))
        token = page.get("end")
        if not page.get("chunk") or not token:
            return events


def check(d: WorkerDeployment, users: dict[str, MatrixClient], rooms: dict[str, str],
          ledger: Ledger) -> list[str]:  # fmt: skip
    """The run's leftovers against the rooms; returns the problems found."""
    problems: list[str] = []
    expected: dict[tuple[str, str, str], int] = defaultdict(int)
    seen_requests = 0
    payments: dict[str, list[str]] = defaultdict(list)
    for room, member in rooms.items():
        events = room_events(users[member], room)
        bills = {}
        for ev in events:
            content = ev.get("content", {})
            kind = content.get("msgtype", "")
            if kind == AA + "request":
                bills[ev["event_id"]] = content[AA + "request"]
            elif kind == AA + "payment":
                payments[content["m.relates_to"]["event_id"]].append(ev["event_id"])
        seen_requests += len(bills)
        for request_id, bill in bills.items():
            payee, paid_by = bill["payee"], set()
            for payment_id in payments.get(request_id, []):
                paid_by.add(
                    next(e for e in events if e["event_id"] == payment_id)["content"][
                        AA + "payment"
                    ]["payer"]
                )
            for user, amount in bill["shares"].items():
                if user != payee and user not in paid_by:
                    expected[(payee, user, bill["currency"])] += amount
                    expected[(user, payee, bill["currency"])] -= amount
    if seen_requests != len(ledger.requests):
        problems.append(f"{len(ledger.requests)} bills asked, {seen_requests} in the rooms")
    doubled = {r: ids for r, ids in payments.items() if len(ids) > 1}
    if doubled:
        problems.append(f"{len(doubled)} bills paid more than once: {list(doubled)[:3]}")
    lost = [r for r, p in ledger.payments.items() if payments.get(r) != [p]]
    if lost:
        problems.append(f"{len(lost)} payments answered but not in the room as answered")
    # Each user's balances, read through the API (alternating workers), against the rooms.
    for user_id, user in users.items():
        got = {
            (b["user_id"], b["currency"]): b["net"]
            for b in user.laiwang("GET", "/aa/balances")["balances"]
            if b["net"]
        }
        want = {(o, cur): n for (u, o, cur), n in expected.items() if u == user_id and n}
        if got != want:
            problems.append(f"balances of {user_id}: {got} != {want} from the rooms")
    # And the tables: one payment per paid share, no share row twice.
    rows = sql(d.main, "SELECT COUNT(*), COUNT(DISTINCT payment_event_id) FROM laiwang_aa_shares"
               " WHERE payment_event_id IS NOT NULL")  # fmt: skip
    if rows != [(len(ledger.payments), len(ledger.payments))]:
        problems.append(f"payment rows {rows}, {len(ledger.payments)} payments made")
    return problems


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def report(stats: Stats, seconds: float, clients: int, ledger: Ledger, problems: list[str]) -> str:
    lines = [
        f"{clients} clients, {seconds:.0f} s, main + 2 generic workers, PostgreSQL + Redis",
        "",
        "| operation | requests | per second | p50 ms | p90 ms | p99 ms | max ms | errors |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    total = 0
    for op in ("aa_request", "aa_pay", "post", "feed"):
        lat = stats.latencies.get(op, [])
        total += len(lat)
        if not lat:
            lines.append(f"| {op} | 0 | 0 | | | | | {stats.errors[op]} |")
            continue
        lines.append(
            f"| {op} | {len(lat)} | {len(lat) / seconds:.1f} | {statistics.median(lat) * 1000:.0f}"
            f" | {percentile(lat, 0.9):.0f} | {percentile(lat, 0.99):.0f}"
            f" | {max(lat) * 1000:.0f} | {stats.errors[op]} |"
        )
    lines += [
        f"| all | {total} | {total / seconds:.1f} | | | | | {sum(stats.errors.values())} |",
        "",
        f"bills asked: {len(ledger.requests)}, paid: {len(ledger.payments)} "
        f"(of which {ledger.double_pays} paid twice at once through both workers; "
        f"{stats.retries['aa_pay']} answers 429 'under way', retried to the same payment)",
        "checks: "
        + (
            "all passed (no lost or doubled payment, balances = rooms)"
            if not problems
            else "FAILED"
        ),  # fmt: skip
    ]
    lines += [f"  - {p}" for p in problems]
    lines += [f"  error: {e}" for e in stats.error_samples]
    return "\n".join(lines)


async def drive(d: WorkerDeployment, prepared: list[tuple[MatrixClient, str, str, list[str]]],
                seconds: float, double_pay: float) -> tuple[Stats, Ledger, float]:  # fmt: skip
    stats, ledger = Stats(), Ledger()
    urls = d.worker_urls
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        clients = []
        for i, (user, timeline, room, others) in enumerate(prepared):
            # Start on alternate workers, so that at any moment both get requests.
            c = Client(user, urls[i % 2 :] + urls[: i % 2], session)
            c.timeline, c.room, c.others = timeline, room, others
            clients.append(c)
        start = time.monotonic()
        deadline = start + seconds
        await asyncio.gather(
            *(client_loop(c, stats, ledger, urls, deadline, random.Random(i), double_pay)
              for i, c in enumerate(clients))
        )  # fmt: skip
        elapsed = time.monotonic() - start
    return stats, ledger, elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument(
        "--double-pay", type=float, default=0.1,
        help="the part of the payments sent twice at once, through both workers",
    )  # fmt: skip
    args = parser.parse_args()
    if not (postgres_available() and redis_available()):
        print("needs PostgreSQL at 127.0.0.1:5432 and Redis at 127.0.0.1:6379")
        return 2
    root = Path(tempfile.mkdtemp(prefix="laiwang-load-"))
    d = WorkerDeployment(root / "hs")
    try:
        d.start()
        t0 = time.monotonic()
        prepared = setup(d, args.clients)
        print(f"set up {len(prepared)} users in {time.monotonic() - t0:.0f} s; driving…")
        stats, ledger, elapsed = asyncio.run(drive(d, prepared, args.seconds, args.double_pay))
        # Let the workers finish indexing what the last calls sent before comparing.
        time.sleep(3)
        users = {u.user_id: u for u, _, _, _ in prepared}
        rooms = {room: u.user_id for u, _, room, _ in prepared}
        problems = check(d, users, rooms, ledger)
        print(
            f"\n{platform.node()}: {platform.processor() or platform.machine()}, "
            f"Python {platform.python_version()}\n"
        )
        print(report(stats, elapsed, len(prepared), ledger, problems))
        return 1 if problems or stats.errors else 0
    finally:
        d.stop()
        remove_tree(root)


if __name__ == "__main__":
    sys.exit(main())
