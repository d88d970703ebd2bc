"""Shared pieces of the benchmarks: a real homeserver to seed, restart and measure.

A benchmark starts Synapse with the module on each database (SQLite, and a fresh PostgreSQL
database when one answers at 127.0.0.1:5432), registers the users it drives, seeds its tables
straight into the database (COPY on PostgreSQL, executemany on SQLite), with the server stopped
or running, and measures: round trips on the client side, and what the server itself logs
(its access log, or the module's DEBUG lines) read back from the log.
"""

from __future__ import annotations

import io
import os
import re
import secrets
import shutil
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from devtools.devserver import HomeserverSpec, SynapseProcess, free_port, register_user
from tests.harness.client import MatrixClient
from tests.harness.servers import (
    create_postgres_database,
    drop_postgres_database,
    postgres_available,
)

T = TypeVar("T")
Row = Sequence[Any]

ACQUAINTANCE_COLUMNS = ("user_id", "other_id", "room_id", "source", "since_ts")
NAMES = {"sqlite": "SQLite", "postgres": "PostgreSQL"}


def backends(
    skip_postgres: bool = False, skip_sqlite: bool = False, say_if_missing: bool = False
) -> list[str]:
    """The databases to run on: SQLite, then PostgreSQL when one answers; only those named in
    LAIWANG_BENCH_BACKENDS (comma-separated, set by the runner's `--backend`) when it is set."""
    only = {b for b in os.environ.get("LAIWANG_BENCH_BACKENDS", "").split(",") if b}
    chosen = [] if skip_sqlite or (only and "sqlite" not in only) else ["sqlite"]
    if only and "postgres" not in only:
        skip_postgres = True
    if not skip_postgres and postgres_available():
        chosen.append("postgres")
    elif not skip_postgres and say_if_missing:
        print("PostgreSQL not reachable at 127.0.0.1:5432: SQLite only")
    return chosen


class BenchDatabase:
    """The homeserver's database, opened next to Synapse (running or not) for seeding and SQL."""

    def __init__(self, spec: HomeserverSpec):
        self.postgres = spec.database is not None
        if spec.database is not None:
            import psycopg2

            args = {k: v for k, v in spec.database.items() if not k.startswith("cp_")}
            self.conn: Any = psycopg2.connect(**args)
        else:
            self.conn = sqlite3.connect(spec.directory / "homeserver.db", timeout=120)

    def insert(self, table: str, columns: Sequence[str], rows: Iterable[Row]) -> int:
        """Load and commit rows: COPY on PostgreSQL, executemany on SQLite; returns the count."""
        count = 0
        names = ",".join(columns)
        cur = self.conn.cursor()
        for chunk in _chunks(rows, 100_000):
            if self.postgres:
                buf = io.StringIO("".join("\t".join(map(_copy_value, r)) + "\n" for r in chunk))
                cur.copy_expert(f"COPY {table} ({names}) FROM STDIN", buf)
            else:
                marks = ",".join("?" * len(columns))
                cur.executemany(f"INSERT INTO {table} ({names}) VALUES ({marks})", chunk)
            count += len(chunk)
        cur.close()
        self.conn.commit()
        return count

    def execute(self, sql: str) -> None:
        cur = self.conn.cursor()
        cur.execute(sql)
        cur.close()
        self.conn.commit()

    def fetchone(self, sql: str) -> Row | None:
        cur = self.conn.cursor()
        cur.execute(sql)
        row: Row | None = cur.fetchone()
        cur.close()
        self.conn.commit()
        return row

    def maintain(self, sql: str) -> None:
        """A statement that must run outside a transaction on PostgreSQL (ANALYZE, VACUUM)."""
        if self.postgres:
            self.conn.autocommit = True
            self.conn.cursor().execute(sql)
            self.conn.autocommit = False
        else:
            self.execute(sql)

    def txn(self) -> Any:
        """A cursor that takes `?` placeholders on both engines, as Synapse's transactions do."""
        cur = self.conn.cursor()
        if not self.postgres:
            return cur

        class Txn:
            def execute(self, sql: str, args: Iterable[Any] = ()) -> None:
                cur.execute(sql.replace("?", "%s"), tuple(args))

            def fetchall(self) -> list[Row]:
                return list(cur.fetchall())

        return Txn()

    def close(self) -> None:
        self.conn.close()


def _copy_value(value: Any) -> str:
    """One field of COPY's text format."""
    if value is None:
        return "\\N"
    text = str(value)
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def _chunks(rows: Iterable[Row], size: int) -> Iterator[list[Row]]:
    chunk: list[Row] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


class BenchClient(MatrixClient):
    """A client whose round trips are the server's and the network's: it does not check the
    answers against openapi.json (the tests do), which would dwarf large ones."""

    validate_responses = False


class BenchServer:
    """One Synapse with the module on `backend` ("sqlite", or a fresh PostgreSQL database)."""

    def __init__(
        self,
        root: Path,
        backend: str,
        module_config: dict[str, Any] | None = None,
        federation: bool = False,
        extra: dict[str, Any] | None = None,
    ):
        self.backend = backend
        self.name = NAMES[backend]
        self.db = create_postgres_database() if backend == "postgres" else None
        port = free_port()
        # A federating server's name carries its federation port: peers connect there.
        fed_port = free_port() if federation else None
        self.spec = HomeserverSpec(
            directory=root / f"{backend}-{secrets.token_hex(3)}",
            client_port=port,
            server_name=f"localhost:{fed_port or port}",
            federation_port=fed_port,
            database=self.db,
            relaxed_ratelimits=True,
            module_config=module_config or {},
            extra=extra or {},
        )
        self.process = SynapseProcess(self.spec)

    def start(self) -> None:
        self.process.start()
        self.process.wait_ready(timeout=600)

    def stop(self) -> None:
        self.process.stop()

    def close(self, keep_database: bool = False) -> None:
        self.stop()
        if self.db is not None and not keep_database:
            drop_postgres_database(self.db)

    def user_id(self, localpart: str) -> str:
        return f"@{localpart}:{self.spec.server_name}"

    def register(self, localpart: str, admin: bool = False) -> MatrixClient:
        reply = register_user(
            self.spec.base_url,
            self.spec.registration_shared_secret,
            localpart,
            secrets.token_hex(8),
            admin,
        )
        return BenchClient(self.spec.base_url, reply["user_id"], reply["access_token"])

    @contextmanager
    def database(self) -> Iterator[BenchDatabase]:
        db = BenchDatabase(self.spec)
        try:
            yield db
        finally:
            db.close()

    def bulk_insert(self, table: str, columns: Sequence[str], rows: Iterable[Row]) -> int:
        """Load rows (typically while the server is stopped), then ANALYZE them on PostgreSQL."""
        with self.database() as db:
            count = db.insert(table, columns, rows)
            if db.postgres:
                db.maintain(f"ANALYZE {table}")
        return count

    def log_offset(self) -> int:
        return len(self.process.log())

    def log_since(self, offset: int) -> str:
        return self.process.log()[offset:]

    def logged(self, offset: int, pattern: re.Pattern[str], group: int = 1) -> list[float]:
        """The numbers `pattern` captures in `group` in the server's log since `offset`."""
        return [float(m.group(group)) for m in pattern.finditer(self.log_since(offset))]

    def processed_ms(self, offset: int, method: str, path_prefix: str) -> list[float]:
        """Processing times (ms) Synapse's access log gives since `offset` for the requests
        `method` whose path starts with `path_prefix` (millisecond resolution)."""
        return [
            float(m.group(1)) * 1000
            for m in _PROCESSED.finditer(self.log_since(offset))
            if m.group(2) == method and m.group(3).startswith(path_prefix)
        ]


_PROCESSED = re.compile(r'Processed request: (\d+\.\d+)sec/.*"([A-Z]+) ([^ ]+) ')


@contextmanager
def bench_root(prefix: str = "laiwang-bench-", keep: bool = False) -> Iterator[Path]:
    """A temporary folder for the servers, removed afterwards unless `keep`."""
    root = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield root
    finally:
        if keep:
            print(f"bench data kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


@contextmanager
def bench_server(
    root: Path,
    backend: str,
    module_config: dict[str, Any] | None = None,
    keep_database: bool = False,
    extra: dict[str, Any] | None = None,
) -> Iterator[BenchServer]:
    """A started server, stopped (and its PostgreSQL database dropped) on the way out. `extra`
    overrides homeserver settings: `{"modules": []}` is plain Synapse, the baseline."""
    server = BenchServer(root, backend, module_config, extra=extra)
    try:
        server.start()
        yield server
    finally:
        server.close(keep_database)


def for_each_backend(
    fn: Callable[[BenchServer], T], sqlite_only: bool = False, prefix: str = "laiwang-bench-"
) -> list[T]:
    """`fn` on a fresh started server on SQLite, then on PostgreSQL when one answers."""
    with bench_root(prefix) as root:
        results = []
        for backend in backends(skip_postgres=sqlite_only):
            with bench_server(root, backend) as server:
                results.append(fn(server))
        return results


def acquaintance_rows(pairs: Iterable[tuple[str, str, str]], since_ts: int) -> Iterator[Row]:
    """Rows of `laiwang_acquaintances` for (user, other, room) pairs: both directions, as the
    module keeps them."""
    for user_id, other_id, room_id in pairs:
        yield (user_id, other_id, room_id, "request", since_ts)
        yield (other_id, user_id, room_id, "request", since_ts)


def timed(fn: Callable[[], Any]) -> float:
    """Seconds `fn` takes."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def median_p95_ms(seconds: list[float]) -> tuple[float, float]:
    ordered = sorted(seconds)
    return statistics.median(ordered) * 1000, ordered[max(0, int(len(ordered) * 0.95) - 1)] * 1000


def result(
    bench: str,
    metric: str,
    backend: str,
    seconds: list[float] | None = None,
    *,
    size: int | None = None,
    median_ms: float | None = None,
    p95_ms: float | None = None,
    target: str = "",
    met: bool | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """One row of docs/benchmarks.md: a metric's median and p95 (from `seconds`, or given), its
    target and whether it was met (None: no target, or not decidable from this row)."""
    if seconds:
        median_ms, p95_ms = median_p95_ms(seconds)
        extra.setdefault("n", len(seconds))
    return {
        "bench": bench,
        "metric": metric,
        "backend": backend,
        "size": size,
        "median_ms": median_ms,
        "p95_ms": p95_ms,
        "target": target,
        "met": met,
        **extra,
    }


def summary(values: list[float]) -> str:
    ordered = sorted(values)
    p90 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.9))]
    return f"median {statistics.median(ordered):.3f} ms, p90 {p90:.3f} ms (n={len(ordered)})"
