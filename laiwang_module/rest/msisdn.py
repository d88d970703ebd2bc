"""The identity-service endpoints Synapse calls for `account_threepid_delegates.msisdn`.

Served at IDENTITY_PREFIX, so the delegate is this same homeserver:

    account_threepid_delegates:
      msisdn: https://<public base URL>/_synapse/client/laiwang/identity

or, with `sms.delegate_secret` set, at IDENTITY_PREFIX/<secret> only (the same URL plus
`/<secret>`), so that nobody but Synapse can call them.

Synapse appends `/_matrix/identity/api/v1/validate/msisdn/requestToken`, `…/submitToken` and
`/_matrix/identity/api/v1/3pid/getValidated3pid`. Synapse itself calls them (no user token);
they are reachable by anyone, which is why codes expire and attempts are limited.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from laiwang_module.rest.base import JsonDict, LaiwangResource, Router, Servlet
from rooms.msisdn import require_client_secret, validate_request_token, validate_submit_token
from rooms.validation import require_str

if TYPE_CHECKING:
    from synapse.http.site import SynapseRequest

    from laiwang_module.server import LaiwangServer

IDENTITY_PREFIX = "/_synapse/client/laiwang/identity"
_V1 = "/_matrix/identity/api/v1"


class MsisdnServlet(Servlet):
    def register(self, router: Router) -> None:
        router.add("POST", f"{_V1}/validate/msisdn/requestToken", self.on_request_token)
        router.add("POST", f"{_V1}/validate/msisdn/submitToken", self.on_submit_token)
        router.add("GET", f"{_V1}/3pid/getValidated3pid", self.on_get_validated)

    async def on_request_token(self, request: SynapseRequest) -> tuple[int, JsonDict]:
        token_request = validate_request_token(self.json_body(request))
        return 200, await self.server.msisdn_handler.request_token(token_request)

    async def on_submit_token(self, request: SynapseRequest) -> tuple[int, JsonDict]:
        submit = validate_submit_token(self.json_body(request))
        return 200, await self.server.msisdn_handler.submit_token(submit)

    async def on_get_validated(self, request: SynapseRequest) -> tuple[int, JsonDict]:
        args = {name: self.query_param(request, name) for name in ("sid", "client_secret")}
        sid = require_str(args, "sid", max_len=255)
        client_secret = require_client_secret(args)
        return 200, await self.server.msisdn_handler.get_validated(sid, client_secret)


def build_identity_resource(server: LaiwangServer) -> LaiwangResource:
    router = Router()
    MsisdnServlet(server).register(router)
    secret = server.config.sms.delegate_secret
    # With a delegate secret, only Synapse (which has the URL) can reach the endpoints.
    return LaiwangResource(router, f"{IDENTITY_PREFIX}/{secret}" if secret else IDENTITY_PREFIX)
