"""What every feature's store mixin may call; `LaiwangStore` provides it."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from synapse.module_api import ModuleApi
from synapse.storage.database import LoggingTransaction

T = TypeVar("T")


class StoreMixin:
    if TYPE_CHECKING:  # implemented by LaiwangStore, which runs the schema first
        _api: ModuleApi

        async def run(self, desc: str, func: Callable[[LoggingTransaction], T]) -> T: ...

        async def run_with(self, desc: str, func: Callable[..., T], *args: Any) -> T: ...
