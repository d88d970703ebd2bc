"""The module's storage: every SQL statement lives in this package.

`LaiwangStore` is composed of one mixin per feature. Every feature's tables are in
`schema/migrations.py`; the schema is brought up to date once per process before the first query
(`ensure_schema`), so nothing needs awaiting in the module's synchronous `__init__`.

Conventions: a store method runs its SQL with `self.run(desc, func, *args)`, desc normally the
method's name and `func` named `<desc>_txn`; rows are unpacked into names, never read by
position. The mixins share one namespace, so method names say their feature where the noun
alone would not (`get_aa_request`, not `get_request`).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Concatenate, ParamSpec, TypeVar

from synapse.logging.context import make_deferred_yieldable, run_in_background
from synapse.module_api import ModuleApi
from synapse.storage.database import LoggingTransaction
from synapse.util.async_helpers import ObservableDeferred

from laiwang_module.storage import (
    aa,
    clusters,
    commerce,
    contacts,
    discovery,
    discovery_peers,
    events,
    msisdn,
    settings,
    shares,
    spaces,
)
from laiwang_module.storage.schema import apply_schema_txn, prepare_version_table_txn
from laiwang_module.storage.schema.migrations import SCHEMAS

P = ParamSpec("P")
T = TypeVar("T")

# PostgreSQL's "could not serialize access" and "deadlock detected": the transaction lost a race
# under Synapse's repeatable-read isolation and must be run again from the start.
RETRYABLE_PGCODES = ("40001", "40P01")
# Synapse runs a transaction up to 5 times back to back; on a row that many processes write at
# once (a busy cluster's activity, the AA ledger of a room under load) all 5 can lose. The store
# then runs it again, after a random pause that grows, so that the racers spread out.
CONTENDED_RUNS = 4
CONTENDED_PAUSE_S = 0.02


def is_contended(e: BaseException) -> bool:
    return getattr(e, "pgcode", None) in RETRYABLE_PGCODES


class LaiwangStore(
    aa.AAStore,
    settings.SettingsStore,
    discovery.DiscoveryStore,
    discovery_peers.DiscoveryPeersStore,
    msisdn.MsisdnStore,
    contacts.ContactsStore,
    shares.SharesStore,
    clusters.ClustersStore,
    commerce.CommerceStore,
    events.EventsStore,
    spaces.SpacesStore,
):
    def __init__(self, api: ModuleApi):
        self._api = api
        self._schema_ready: ObservableDeferred[None] | None = None
        self._schema_done = False

    async def ensure_schema(self) -> None:
        if self._schema_done:
            return
        if self._schema_ready is None:
            self._schema_ready = ObservableDeferred(
                run_in_background(self._migrate), consumeErrors=True
            )
        await make_deferred_yieldable(self._schema_ready.observe())

    async def _migrate(self) -> None:
        try:
            await self._api.run_db_interaction("laiwang_schema_table", prepare_version_table_txn)
            for schema in SCHEMAS:
                await self._api.run_db_interaction(
                    f"laiwang_schema_{schema.feature}", apply_schema_txn, schema
                )
        except Exception:
            self._schema_ready = None  # let the next query try again
            raise
        self._schema_done = True

    async def run(
        self,
        desc: str,
        func: Callable[Concatenate[LoggingTransaction, P], T],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """Run `func(txn, *args, **kwargs)` in a transaction, once the schema is up to date
        (again, after a pause, should it keep losing races on PostgreSQL: `CONTENDED_RUNS`)."""
        await self.ensure_schema()
        for run in range(1, CONTENDED_RUNS + 1):
            try:
                return await self._api.run_db_interaction(f"laiwang_{desc}", func, *args, **kwargs)
            except Exception as e:
                if run == CONTENDED_RUNS or not is_contended(e):
                    raise
                await self._api.sleep(random.uniform(1, 2) * CONTENDED_PAUSE_S * 2**run)
        raise AssertionError("unreachable")
