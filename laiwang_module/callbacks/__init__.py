"""Synapse callbacks (spam checker, third-party rules, unsigned fields).

Each feature has a module here with `register(server)`, which calls `server.api.register_…`.
Synapse keeps a list per callback kind, so several features may each register their own
`check_event_for_spam` or `on_new_event`; all of them run.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from laiwang_module.callbacks import aa, clusters, contacts, discovery, shares

if TYPE_CHECKING:
    from laiwang_module.server import LaiwangServer

REGISTRARS: tuple[Callable[[LaiwangServer], None], ...] = (
    aa.register,
    contacts.register,
    discovery.register,
    shares.register,  # after contacts: its invite policy decides before shares accept
    clusters.register,
)


def register_all(server: LaiwangServer) -> None:
    for register in REGISTRARS:
        register(server)
