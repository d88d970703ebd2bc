"""What every feature's store mixin may call; `LaiwangStore` provides it."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Concatenate, ParamSpec, TypeVar

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
