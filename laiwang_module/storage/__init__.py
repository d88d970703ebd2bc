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
    events,
    msisdn,
    settings,
    shares,
)
from laiwang_module.storage.schema import apply_schema_txn, prepare_version_table_txn
from laiwang_module.storage.schema.migrations import SCHEMAS

P = ParamSpec("P")
T = TypeVar("T")


class LaiwangStore(
    aa.AAStore,
    settings.SettingsStore,
    discovery.DiscoveryStore,
    msisdn.MsisdnStore,
    contacts.ContactsStore,
    shares.SharesStore,
    clusters.ClustersStore,
    commerce.CommerceStore,
    events.EventsStore,
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
        """Run `func(txn, *args, **kwargs)` in a transaction, once the schema is up to date."""
        await self.ensure_schema()
        return await self._api.run_db_interaction(f"laiwang_{desc}", func, *args, **kwargs)
