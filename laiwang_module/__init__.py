"""Laiwang: an acquaintance-first social network as a Synapse module.

Enable it in homeserver.yaml:

    modules:
      - module: laiwang_module.LaiwangModule
        config: {}
"""

from __future__ import annotations

from typing import Any

from synapse.module_api import ModuleApi

from laiwang_module.callbacks import register_all
from laiwang_module.config import LaiwangConfig, parse_config
from laiwang_module.homeserver_config import check_homeserver_config
from laiwang_module.rest import build_resource
from laiwang_module.rest.base import PREFIX
from laiwang_module.rest.discovery import (
    IDENTITY_SERVICE_PREFIX,
    advertise_identity_service,
    build_identity_service_resource,
)
from laiwang_module.rest.msisdn import IDENTITY_PREFIX, build_identity_resource, set_up_delegate
from laiwang_module.rest.web import WEB_PREFIX, build_web_resource
from laiwang_module.server import LaiwangServer

__all__ = ["LaiwangModule"]
__version__ = "0.1.0"


class LaiwangModule:
    def __init__(self, config: LaiwangConfig, api: ModuleApi):
        # Before anything is registered: a missing homeserver setting stops Synapse here.
        check_homeserver_config(api, config)
        self.server = LaiwangServer(config, api)
        api.register_web_resource(PREFIX, build_resource(self.server))
        # The msisdn validation endpoints Synapse calls (account_threepid_delegates.msisdn).
        # Only Synapse knows their URL (rest/msisdn.py).
        secret = set_up_delegate(api, config.sms)
        api.register_web_resource(IDENTITY_PREFIX, build_identity_resource(self.server, secret))
        # The Identity Service API v2 (discovery by phone book for any Matrix client).
        api.register_web_resource(
            IDENTITY_SERVICE_PREFIX, build_identity_service_resource(self.server)
        )
        if config.discovery.advertise_identity_server:
            advertise_identity_service(api)
        if config.web.enabled:
            # The web companion: static files only, it calls the endpoints above (docs/web.md).
            api.register_web_resource(WEB_PREFIX, build_web_resource())
        register_all(self.server)
        # Bring the schema up to date now, so that a broken database shows in the log at start
        # rather than on the first request. Every process may do this: migrations are locked.
        api.run_as_background_process("laiwang_schema", self.server.store.ensure_schema)

    @staticmethod
    def parse_config(config: Any) -> LaiwangConfig:
        return parse_config(config)
