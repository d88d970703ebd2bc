"""Shared pieces of the benchmarks: a real homeserver to seed, restart and measure.

A benchmark starts Synapse with the module (SQLite, or a fresh PostgreSQL database), registers
the users it drives, stops it, bulk-loads its module tables straight into the database, restarts
it and measures. Figures are medians of what the server itself logs.
"""

from __future__ import annotations

import io
import secrets
import sqlite3
import statistics
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from laiwang_module.devserver import HomeserverSpec, SynapseProcess, free_port, register_user
from tests.harness.client import MatrixClient
from tests.harness.servers import (
    create_postgres_database,
    drop_postgres_database,
    postgres_available,
)


def backends() -> list[str]:
    return ["sqlite", "postgres"] if postgres_available() else ["sqlite"]


class BenchServer:
    def __init__(self, root: Path, backend: str, module_config: dict[str, Any] | None = None):
        self.backend = backend
        self.db = create_postgres_database() if backend == "postgres" else None
        port = free_port()
        self.spec = HomeserverSpec(
            directory=root / f"{backend}-{secrets.token_hex(3)}",
            client_port=port,
            server_name=f"localhost:{port}",
            database=self.db,
            relaxed_ratelimits=True,
            module_config=module_config or {},
        )
        self.process = SynapseProcess(self.spec)

    def start(self) -> None:
        self.process.start()
        self.process.wait_ready(timeout=600)

    def stop(self) -> None:
        self.process.stop()

    def close(self) -> None:
        self.stop()
        if self.db is not None:
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
        return MatrixClient(self.spec.base_url, reply["user_id"], reply["access_token"])

    def bulk_insert(self, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> int:
        """Load rows while the server is stopped: COPY on PostgreSQL, executemany on SQLite."""
        count = 0
        if self.db is None:
            conn = sqlite3.connect(self.spec.directory / "homeserver.db")
            marks = ",".join("?" * len(columns))
            with conn:
                for chunk in _chunks(rows, 100_000):
                    conn.executemany(
                        f"INSERT INTO {table} ({','.join(columns)}) VALUES ({marks})", chunk
                    )
                    count += len(chunk)
            conn.close()
            return count
        import psycopg2

        a = self.db
        pg = psycopg2.connect(host=a["host"], port=a["port"], user=a["user"], dbname=a["database"])
        with pg, pg.cursor() as cur:
            for chunk in _chunks(rows, 100_000):
                buf = io.StringIO("".join("\t".join(map(str, r)) + "\n" for r in chunk))
                cur.copy_expert(f"COPY {table} ({','.join(columns)}) FROM STDIN", buf)
                count += len(chunk)
        pg.autocommit = True
        with pg.cursor() as cur:
            cur.execute(f"ANALYZE {table}")
        pg.close()
        return count

    def log_offset(self) -> int:
        return len(self.process.log())

    def log_since(self, offset: int) -> str:
        return self.process.log()[offset:]


def _chunks(rows: Iterable[Sequence[Any]], size: int) -> Iterator[list[Sequence[Any]]]:
    chunk: list[Sequence[Any]] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


@contextmanager
def bench_server(
    root: Path, backend: str, module_config: dict[str, Any] | None = None
) -> Iterator[BenchServer]:
    server = BenchServer(root, backend, module_config)
    try:
        server.start()
        yield server
    finally:
        server.close()


def summary(values: list[float]) -> str:
    ordered = sorted(values)
    p90 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.9))]
    return f"median {statistics.median(ordered):.3f} ms, p90 {p90:.3f} ms (n={len(ordered)})"
