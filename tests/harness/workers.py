"""A worker deployment for the tests: Synapse's main process and two generic workers on
PostgreSQL and Redis, the module on each, as config/workers/ describes for production.

Client traffic goes to the workers, alternating request by request between them as a load
balancer in front of them would; worker2 runs the background tasks (`run_background_tasks_on`),
so the main process does neither client work nor the module's periodic jobs. A federating
deployment takes inbound federation on worker1; the main process sends it."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import requests

from devtools.devserver import SynapseProcess, free_port
from tests.harness.client import MatrixClient
from tests.harness.servers import (
    TestHomeserver,
    create_postgres_database,
    drop_postgres_database,
    start_all,
)

WORKERS = ("worker1", "worker2")
BACKGROUND_WORKER = "worker2"


class AlternatingClient(MatrixClient):
    """A user whose requests go to each worker in turn (round robin, per request)."""

    def __init__(self, urls: list[str], user_id: str, access_token: str | None):
        super().__init__(urls[0], user_id, access_token)
        self._urls = itertools.cycle(urls)

    def raw(self, method: str, path: str, body: Any = None, **kw: Any) -> requests.Response:
        self.base_url = next(self._urls)
        return super().raw(method, path, body, **kw)


class WorkerDeployment:
    """main + worker1 + worker2 on one fresh PostgreSQL database."""

    def __init__(self, directory: Path, module_config: dict[str, Any] | None = None,
                 federation: bool = False):  # fmt: skip
        self.database = create_postgres_database()
        self.main = TestHomeserver(
            directory, database=self.database, module_config=module_config, federation=federation
        )
        spec = self.main.spec
        if federation:
            # Inbound federation goes to worker1 (its listener on the server's federation port).
            spec.federation_worker = WORKERS[0]
            spec.main_tls_port = free_port()
        spec.workers = {name: free_port() for name in WORKERS}
        spec.replication_port = free_port()
        spec.background_worker = BACKGROUND_WORKER
        self.workers = [SynapseProcess(spec, worker=name) for name in WORKERS]

    @property
    def processes(self) -> list[SynapseProcess]:
        return [self.main.process, *self.workers]

    @property
    def worker_urls(self) -> list[str]:
        return [w.base_url for w in self.workers]

    def start(self) -> WorkerDeployment:
        start_all([self.main])
        for w in self.workers:
            w.start()
        for w in self.workers:
            w.wait_ready()
        return self

    def stop(self) -> None:
        for p in reversed(self.processes):
            p.stop()
        drop_postgres_database(self.database)

    def new_user(self, name: str = "u") -> AlternatingClient:
        """A fresh user (registered on the main process) whose traffic alternates workers."""
        u = self.main.new_user(name)
        return AlternatingClient(self.worker_urls, u.user_id, u.access_token)

    def on(self, user: MatrixClient, index: int) -> MatrixClient:
        """`user` talking to one worker only."""
        return MatrixClient(self.workers[index].base_url, user.user_id, user.access_token)
