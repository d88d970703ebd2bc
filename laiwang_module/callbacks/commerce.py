"""Commerce has no Synapse callback of its own; it registers the job that finishes provider
payments whose `pay` died between the charge and the event (handlers/commerce.py), on the
background-tasks process only."""

from __future__ import annotations

from typing import TYPE_CHECKING

from laiwang_module.handlers.commerce import JOB_INTERVAL_MS

if TYPE_CHECKING:
    from laiwang_module.server import LaiwangServer


class CommerceCallbacks:
    def __init__(self, server: LaiwangServer):
        self._api = server.api
        self._handler = server.commerce_handler

    def register(self) -> None:
        if self._handler.enabled and self._api.should_run_background_tasks():
            self._api.looping_background_call(
                self._handler.finish_payments, JOB_INTERVAL_MS, desc="laiwang_commerce"
            )
