"""The container of one process's Laiwang objects, in the manner of Synapse's `HomeServer`.

It builds each handler once, on first use, so that handlers can depend on one another without
import-order puzzles. It holds no authoritative state: everything lasting is in the database.
"""

from __future__ import annotations

from functools import cached_property

from synapse.module_api import ModuleApi

from laiwang_module.config import LaiwangConfig
from laiwang_module.handlers.aa import AAHandler
from laiwang_module.handlers.clusters import ClustersHandler
from laiwang_module.handlers.commerce import CommerceHandler
from laiwang_module.handlers.contacts import ContactsHandler
from laiwang_module.handlers.discovery import DiscoveryHandler
from laiwang_module.handlers.events import EventsHandler
from laiwang_module.handlers.msisdn import MsisdnHandler
from laiwang_module.handlers.settings import SettingsHandler
from laiwang_module.handlers.shares import SharesHandler
from laiwang_module.storage import LaiwangStore


class LaiwangServer:
    def __init__(self, config: LaiwangConfig, api: ModuleApi):
        self.config = config
        self.api = api
        self.store = LaiwangStore(api)

    @cached_property
    def aa_handler(self) -> AAHandler:
        return AAHandler(self)

    @cached_property
    def contacts_handler(self) -> ContactsHandler:
        return ContactsHandler(self)

    @cached_property
    def settings_handler(self) -> SettingsHandler:
        return SettingsHandler(self)

    @cached_property
    def discovery_handler(self) -> DiscoveryHandler:
        return DiscoveryHandler(self)

    @cached_property
    def msisdn_handler(self) -> MsisdnHandler:
        return MsisdnHandler(self)

    @cached_property
    def shares_handler(self) -> SharesHandler:
        return SharesHandler(self)

    @cached_property
    def clusters_handler(self) -> ClustersHandler:
        return ClustersHandler(self)

    @cached_property
    def commerce_handler(self) -> CommerceHandler:
        return CommerceHandler(self)

    @cached_property
    def events_handler(self) -> EventsHandler:
        return EventsHandler(self)
