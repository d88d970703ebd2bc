"""Shared homeservers for the end-to-end tests.

Two federating Synapse processes with the module (`hs1`, `hs2`) and a plain one playing a
malicious server (`attacker`) are started together the first time any test needs one, and shared
by the whole session; each test registers fresh users. Unit tests start
nothing. Set LAIWANG_KEEP_TEST_DATA=1 to keep the servers' folders (logs) after the run.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from signedjson.key import encode_verify_key_base64, generate_signing_key, get_verify_key
from signedjson.types import SigningKey

from devtools.commerce import MockProcess
from devtools.devserver import SynapseProcess, free_port
from tests.harness.servers import (
    AttackerHomeserver,
    TestHomeserver,
    create_postgres_database,
    drop_postgres_database,
    postgres_available,
    redis_available,
    remove_tree,
    start_all,
)
from tests.harness.workers import WorkerDeployment

COMMERCE_API_KEY = "test-commerce-api-key-0123456789abcdef"


@pytest.fixture(scope="session")
def test_root() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="laiwang-tests-"))
    yield root
    if not os.environ.get("LAIWANG_KEEP_TEST_DATA"):
        remove_tree(root)
    else:
        print(f"\ntest homeservers kept in {root}")


@pytest.fixture(scope="session")
def payment_keys() -> dict[str, SigningKey]:
    """Signing keys of the test payment providers (AA receipts): hs1 trusts "testpay",
    hs2 trusts "testpay" and "hs2pay"."""
    return {name: generate_signing_key("1") for name in ("testpay", "hs2pay")}


def payment_providers(keys: dict[str, SigningKey], *names: str) -> dict[str, Any]:
    return {
        name: {
            "verify_key": f"ed25519:{keys[name].version} "
            + encode_verify_key_base64(get_verify_key(keys[name]))
        }
        for name in names
    }


@pytest.fixture(scope="session")
def commerce_mock(test_root: Path) -> Iterator[MockProcess]:
    """The commerce service mock, shared by hs1 and hs2 (their `commerce` block)."""
    mock = MockProcess(test_root / "commerce-mock", api_key=COMMERCE_API_KEY).start()
    yield mock
    mock.stop()


def commerce_config(mock: MockProcess) -> dict[str, Any]:
    """The module config that points at the mock and trusts its receipts."""
    return {
        "commerce": {"base_url": mock.base_url, "api_key": COMMERCE_API_KEY, "timeout": "3s"},
        "payment_providers": {"laiwang-pay": {"verify_key": mock.print_("--print-verify-key")}},
    }


@pytest.fixture(scope="session")
def federation(
    test_root: Path, payment_keys: dict[str, SigningKey], commerce_mock: MockProcess
) -> Iterator[tuple[TestHomeserver, TestHomeserver, AttackerHomeserver]]:
    """hs1 and hs2 with the module (and the commerce mock), and a plain Synapse playing a
    malicious server, started together (Synapse's start-up dominates) and shared by the
    session."""
    commerce = commerce_config(commerce_mock)
    hs1_config = {
        "commerce": commerce["commerce"],
        "payment_providers": {
            **payment_providers(payment_keys, "testpay"),
            **commerce["payment_providers"],
        },
    }
    hs2_config = {
        "commerce": commerce["commerce"],
        "payment_providers": {
            **payment_providers(payment_keys, "testpay", "hs2pay"),
            **commerce["payment_providers"],
        },
    }
    hs1 = TestHomeserver(test_root / "hs1", federation=True, module_config=hs1_config)
    hs2 = TestHomeserver(test_root / "hs2", federation=True, module_config=hs2_config)
    attacker = AttackerHomeserver(test_root / "attacker")
    start_all([hs1, hs2, attacker])
    yield hs1, hs2, attacker
    for s in (hs1, hs2, attacker):
        s.stop()


@pytest.fixture(scope="session")
def hs1(federation: tuple[TestHomeserver, TestHomeserver, AttackerHomeserver]) -> TestHomeserver:
    return federation[0]


@pytest.fixture(scope="session")
def hs2(federation: tuple[TestHomeserver, TestHomeserver, AttackerHomeserver]) -> TestHomeserver:
    return federation[1]


@pytest.fixture(scope="session")
def attacker(
    federation: tuple[TestHomeserver, TestHomeserver, AttackerHomeserver],
) -> AttackerHomeserver:
    """A federating Synapse without the module (see AttackerHomeserver)."""
    return federation[2]


def skip_or_fail(reason: str) -> None:
    """A fresh machine may lack PostgreSQL and Redis: skip there. CI has them, so a missing
    service is a failure in CI, never a silent skip."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI=true: the services must be there)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def lagging(test_root: Path) -> Iterator[tuple[TestHomeserver, TestHomeserver]]:
    """A normal server and one whose index lags its rooms by seconds: every update of every
    feature's tables from an event fails first (`testing.fail_updates`) and is retried 3 s
    later. A user's own call must hold for their next call there all the same."""
    lag = {
        "testing": {"fail_updates": dict.fromkeys(("aa", "contacts", "shares", "clusters"), 1)},
        "upkeep": {"retry_interval": "3s"},
    }
    servers = start_all(
        [
            TestHomeserver(test_root / "hs-prompt", federation=True),
            TestHomeserver(test_root / "hs-lagging", federation=True, module_config=lag),
        ]
    )
    yield servers[0], servers[1]
    for s in servers:
        s.stop()


@pytest.fixture(scope="session")
def pg_homeserver(test_root: Path) -> Iterator[TestHomeserver]:
    if not postgres_available():
        skip_or_fail("no PostgreSQL server at 127.0.0.1:5432")
    db = create_postgres_database()
    server = TestHomeserver(test_root / "hs-pg", database=db)
    start_all([server])
    yield server
    server.stop()
    drop_postgres_database(db)


@pytest.fixture(scope="session")
def worker_homeserver(test_root: Path) -> Iterator[tuple[TestHomeserver, SynapseProcess]]:
    """A main process and one generic worker (PostgreSQL + Redis), the module on both."""
    if not (postgres_available() and redis_available()):
        skip_or_fail("workers need PostgreSQL at 127.0.0.1:5432 and Redis at 127.0.0.1:6379")
    db = create_postgres_database()
    server = TestHomeserver(test_root / "hs-workers", database=db)
    server.spec.workers = {"worker1": free_port()}
    server.spec.replication_port = free_port()
    start_all([server])
    worker = SynapseProcess(server.spec, worker="worker1")
    worker.start()
    try:
        worker.wait_ready()
        yield server, worker
    finally:
        worker.stop()
        server.stop()
        drop_postgres_database(db)


@pytest.fixture(scope="session")
def two_workers(test_root: Path) -> Iterator[WorkerDeployment]:
    """Main process + worker1 + worker2 (PostgreSQL + Redis), the module on all three; client
    traffic alternates between the workers, worker2 runs the background tasks, worker1 takes
    inbound federation."""
    if not (postgres_available() and redis_available()):
        skip_or_fail("workers need PostgreSQL at 127.0.0.1:5432 and Redis at 127.0.0.1:6379")
    # Fast jobs, so that a test sees them run on the background worker.
    deployment = WorkerDeployment(
        test_root / "hs-two-workers",
        module_config={"upkeep": {"retry_interval": "1s", "reconcile_interval": "5s"}},
        federation=True,
    )
    try:
        yield deployment.start()
    finally:
        deployment.stop()
