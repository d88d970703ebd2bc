"""Synapse callbacks (spam checker, third-party rules, unsigned fields), one class per feature.

Each feature's `<Feature>Callbacks` has the callbacks as methods named after Synapse's callback
(they parse what Synapse hands over and leave the decision to the feature's handler) and a
`register()` that registers them. Synapse keeps a list per callback kind, so several features
may each register their own `check_event_for_spam` or `on_new_event`; all of them run, in the
order of FEATURES.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from laiwang_module.callbacks.aa import AACallbacks
from laiwang_module.callbacks.clusters import ClustersCallbacks
from laiwang_module.callbacks.commerce import CommerceCallbacks
from laiwang_module.callbacks.contacts import ContactsCallbacks
from laiwang_module.callbacks.discovery import DiscoveryCallbacks
from laiwang_module.callbacks.events import EventsCallbacks
from laiwang_module.callbacks.msisdn import MsisdnCallbacks
from laiwang_module.callbacks.shares import SharesCallbacks

if TYPE_CHECKING:
    from laiwang_module.server import LaiwangServer


class FeatureCallbacks(Protocol):
    def __init__(self, server: LaiwangServer): ...

    def register(self) -> None: ...


FEATURES: tuple[type[FeatureCallbacks], ...] = (
    AACallbacks,
    ContactsCallbacks,
    DiscoveryCallbacks,
    SharesCallbacks,  # after contacts: its invite policy decides before shares accept
    ClustersCallbacks,
    MsisdnCallbacks,
    CommerceCallbacks,
    EventsCallbacks,  # the retries and the reconcile of every feature's updates
)


def register_all(server: LaiwangServer) -> None:
    for callbacks in FEATURES:
        callbacks(server).register()
