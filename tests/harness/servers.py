"""Homeserver processes shared by the tests, and fresh users on them."""

from __future__ import annotations

import atexit
import itertools
import os
import secrets
import shutil
import socket
import sqlite3
from pathlib import Path
from typing import Any

import yaml

from devtools.devserver import (
    HomeserverSpec,
    StartupError,
    SynapseProcess,
    free_port,
    register_user,
)
from tests.harness.client import MatrixClient

_user_counter = itertools.count()

# `LAIWANG_TEST_DATABASE=postgres` runs every test homeserver on a fresh PostgreSQL database
# (`python3 run.py test` does a second pass so); the default is Synapse's SQLite.
ON_POSTGRES = os.environ.get("LAIWANG_TEST_DATABASE") == "postgres"
_created_databases: list[dict[str, Any]] = []


def _drop_created_databases() -> None:
    for db in _created_databases:
        try:
            drop_postgres_database(db)
        except Exception:
            pass


atexit.register(_drop_created_databases)


def _test_database() -> dict[str, Any]:
    db = create_postgres_database()
    _created_databases.append(db)
    return db


class TestHomeserver:
    """A running Synapse with the module, and a factory of fresh users on it."""

    __test__ = False  # not a pytest test class

    def __init__(
        self,
        directory: Path,
        *,
        federation: bool = False,
        module_config: dict[str, Any] | None = None,
        database: dict[str, Any] | None = None,
        extra: dict[str, Any] | None = None,
    ):
        client_port = free_port()
        fed_port = free_port() if federation else None
        self._own_database = database is None and ON_POSTGRES
        if self._own_database:
            database = _test_database()
        self.spec = HomeserverSpec(
            directory=directory,
            client_port=client_port,
            # A federating server's name carries its federation port: peers connect there.
            server_name=f"localhost:{fed_port}" if fed_port else f"localhost:{client_port}",
            federation_port=fed_port,
            module_config=module_config or {},
            database=database,
            relaxed_ratelimits=True,
            metrics=True,
            extra=extra or {},
        )
        self.process = SynapseProcess(self.spec)

    @property
    def server_name(self) -> str:
        return self.spec.server_name

    @property
    def base_url(self) -> str:
        return self.spec.base_url

    def reset_ports(self) -> None:
        """New ports (and so a new server name): the old data is wiped, it names the old one."""
        remove_tree(self.spec.directory)
        if self._own_database:
            self.spec.database = _test_database()
        self.spec.client_port = free_port()
        if self.spec.federation_port is not None:
            self.spec.federation_port = free_port()
            self.spec.server_name = f"localhost:{self.spec.federation_port}"
        else:
            self.spec.server_name = f"localhost:{self.spec.client_port}"

    def start(self) -> TestHomeserver:
        self.process.start()
        return self

    def wait_ready(self) -> TestHomeserver:
        self.process.wait_ready()
        return self

    def stop(self) -> None:
        self.process.stop()

    def restart(self) -> None:
        self.process.restart()

    def kill(self) -> None:
        """Stop the process at once, as `kill -9` does: no shutdown, in-flight work is lost."""
        proc = self.process.proc
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()

    def user_id(self, localpart: str) -> str:
        return f"@{localpart}:{self.server_name}"

    def new_user(self, name: str = "u", *, admin: bool = False) -> MatrixClient:
        """A freshly registered user, so that tests sharing a server do not see each other."""
        localpart = f"{name}{next(_user_counter)}_{secrets.token_hex(3)}".lower()
        password = secrets.token_urlsafe(12)
        reply = register_user(
            self.base_url, self.spec.registration_shared_secret, localpart, password, admin
        )
        client = MatrixClient(self.base_url, reply["user_id"], reply["access_token"])
        client.password = password  # type: ignore[attr-defined]
        return client

    def anonymous(self) -> MatrixClient:
        return MatrixClient(self.base_url, "", None)


ATTACKER_AS_TOKEN = "attacker-as-token"


class AttackerHomeserver(TestHomeserver):
    """A federating Synapse *without* the module, playing a malicious server in the trust tests:
    it signs whatever its users send. Its application service acts as any of its users and sets
    `origin_server_ts` (`impersonate(user).call(..., params={"ts": ms})`), and its invites carry
    Laiwang's state types in their stripped state, as any server may."""

    def __init__(self, directory: Path):
        registration = {
            "id": "attacker",
            "url": None,
            "as_token": ATTACKER_AS_TOKEN,
            "hs_token": "attacker-hs-token",
            "sender_localpart": "attacker-bot",
            "namespaces": {"users": [{"exclusive": False, "regex": ".*"}]},
        }
        # Beside the server's folder, which a restart on new ports wipes.
        directory.parent.mkdir(parents=True, exist_ok=True)
        reg_file = directory.parent / f"{directory.name}-registration.yaml"
        reg_file.write_text(yaml.safe_dump(registration))
        super().__init__(
            directory,
            federation=True,
            extra={"modules": [], "app_service_config_files": [str(reg_file)]},
        )

    def impersonate(self, user: MatrixClient) -> MatrixClient:
        """`user` (of this server) driven through the application service, so that requests
        may carry `ts`."""
        return MatrixClient(
            self.base_url, user.user_id, ATTACKER_AS_TOKEN, params={"user_id": user.user_id}
        )


def start_all(servers: list[TestHomeserver], attempts: int = 3) -> list[TestHomeserver]:
    """Start several homeservers at once and wait for all: Synapse's start-up dominates.

    A free port can be taken by another process between choosing it and Synapse binding it;
    such a server starts again from scratch on new ports."""
    for s in servers:
        s.start()
    try:
        for s in servers:
            for attempt in range(attempts):
                try:
                    s.wait_ready()
                    break
                except StartupError:
                    if (
                        attempt + 1 == attempts
                        or "Address already in use" not in s.process.output()
                    ):
                        raise
                    s.stop()
                    s.reset_ports()
                    s.start()
    except Exception:
        for s in servers:
            s.stop()
        raise
    return servers


def _connect(hs: TestHomeserver) -> Any:
    if hs.spec.database is not None:
        import psycopg2

        db = hs.spec.database
        return psycopg2.connect(
            host=db["host"], port=db["port"], user=db["user"], dbname=db["database"]
        )
    return sqlite3.connect(Path(hs.spec.directory) / "homeserver.db", timeout=30)


def _query(hs: TestHomeserver, query: str) -> str:
    # The tests write `?` placeholders, as the module does; psycopg2 wants `%s`.
    return query.replace("?", "%s") if hs.spec.database is not None else query


def start_again(servers: list[TestHomeserver]) -> None:
    """Start stopped (or killed) servers again, at once, on the same ports and data."""
    for s in servers:
        s.process.start()
    for s in servers:
        s.process.wait_ready()


def sql(hs: TestHomeserver, query: str, *args: Any) -> list[tuple]:
    """Read the server's database, SQLite or PostgreSQL (Synapse keeps running; reads do not
    block it)."""
    conn = _connect(hs)
    try:
        cur = conn.cursor()
        # Without arguments psycopg2 must not read `%` as a placeholder (`LIKE 'x%'`).
        cur.execute(_query(hs, query), args) if args else cur.execute(query)
        return [tuple(row) for row in cur.fetchall()]
    finally:
        conn.close()


def module_tables(hs: TestHomeserver) -> list[str]:
    """The names of the module's tables (`laiwang_*`) in the server's database, either backend."""
    if hs.spec.database is not None:
        query = (
            "SELECT table_name FROM information_schema.tables"
            " WHERE table_schema = 'public' AND table_name LIKE 'laiwang_%'"
        )
    else:
        query = "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'laiwang_%'"
    return [str(name) for (name,) in sql(hs, query)]


def execute(hs: TestHomeserver, query: str, *args: Any) -> int:
    """Write to the server's database behind Synapse's back (to stage a state that a crash or
    another server would leave), committed at once; the number of rows changed."""
    conn = _connect(hs)
    try:
        cur = conn.cursor()
        # Without arguments psycopg2 must not read `%` as a placeholder (`LIKE 'x%'`).
        cur.execute(_query(hs, query), args) if args else cur.execute(query)
        conn.commit()
        return int(cur.rowcount)
    finally:
        conn.close()


def _listening(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def redis_available() -> bool:
    return _listening("127.0.0.1", 6379)


def postgres_available(host: str = "127.0.0.1", port: int = 5432) -> bool:
    if os.environ.get("LAIWANG_SKIP_POSTGRES") or not _listening(host, port):
        return False
    try:
        import psycopg2  # noqa: F401
    except ImportError:
        return False
    return True


def create_postgres_database() -> dict[str, Any]:
    """A fresh database with the collation Synapse requires; returns psycopg2 args."""
    import psycopg2

    name = "laiwang_test_" + secrets.token_hex(4)
    conn = psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname="postgres")
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(
            f"CREATE DATABASE {name} ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0"
        )
    conn.close()
    return {
        "user": "postgres",
        "host": "127.0.0.1",
        "port": 5432,
        "database": name,
        "cp_min": 1,
        "cp_max": 5,
    }


def drop_postgres_database(args: dict[str, Any]) -> None:
    import psycopg2

    conn = psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname="postgres")
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS {args['database']} WITH (FORCE)")
    conn.close()


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
