"""What every feature's store mixin may call; `LaiwangStore` provides it."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar

from synapse.module_api import ModuleApi
from synapse.storage.database import LoggingTransaction

P = ParamSpec("P")
T = TypeVar("T")


class StoreMixin:
    if TYPE_CHECKING:  # implemented by LaiwangStore, which runs the schema first
        _api: ModuleApi

        async def run(
            self,
            desc: str,
            func: Callable[Concatenate[LoggingTransaction, P], T],
            *args: P.args,
            **kwargs: P.kwargs,
        ) -> T: ...

    def _now(self) -> int:
        return int(self._api.get_current_time_msec())


def fetch_value(txn: LoggingTransaction) -> Any:
    """The one column of the one row the last query returned; None when it returned no row."""
    row = txn.fetchone()
    if row is None:
        return None
    (value,) = row
    return value
