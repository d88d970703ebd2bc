"""HTTP endpoints under /_synapse/client/laiwang/v1."""

from __future__ import annotations

from typing import TYPE_CHECKING

from laiwang_module.rest.aa import AAServlet
from laiwang_module.rest.base import LaiwangResource, Router
from laiwang_module.rest.clusters import ClustersServlet
from laiwang_module.rest.commerce import CommerceServlet
from laiwang_module.rest.contacts import ContactsServlet
from laiwang_module.rest.discovery import DiscoveryServlet
from laiwang_module.rest.msisdn import MsisdnClientServlet
from laiwang_module.rest.openapi import OpenApiServlet
from laiwang_module.rest.settings import SettingsServlet
from laiwang_module.rest.shares import SharesServlet

if TYPE_CHECKING:
    from laiwang_module.server import LaiwangServer

SERVLETS = (
    SettingsServlet,
    ContactsServlet,
    DiscoveryServlet,
    MsisdnClientServlet,
    AAServlet,
    SharesServlet,
    ClustersServlet,
    CommerceServlet,
    OpenApiServlet,
)


def build_resource(server: LaiwangServer) -> LaiwangResource:
    router = Router()
    for servlet_class in SERVLETS:
        servlet_class(server).register(router)
    return LaiwangResource(router)
