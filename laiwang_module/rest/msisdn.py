"""Binding a phone number: the module's requestToken for logged-in users, and the
identity-service endpoints Synapse calls for `account_threepid_delegates.msisdn`.

`POST /_synapse/client/laiwang/v1/msisdn/requestToken` takes the body and answers the shape of
the client API's `/account/3pid/msisdn/requestToken`, which the module closes (it tells a bound
number from a free one); a reverse proxy may route the client API path here, so that every
client's "add phone" screen works unchanged (docs/api/msisdn.md).

The delegate is this same homeserver:

    account_threepid_delegates:
      msisdn: https://<public base URL>/_synapse/client/laiwang/identity

The endpoints answer only at IDENTITY_PREFIX/<secret> (anything else is 404 M_UNRECOGNIZED), and
at start-up the module appends `/<secret>` to that setting in Synapse's memory, so Synapse is
the only caller that knows the URL: a stranger, on loopback or not, cannot cause a text. The
secret is `sms.delegate_secret`, or by default one derived from Synapse's macaroon secret (the
same on every worker, never written anywhere). It is redacted from every log line
(log_redaction.py).

Synapse appends `/_matrix/identity/api/v1/validate/msisdn/requestToken`, `…/submitToken` and
`/_matrix/identity/api/v1/3pid/getValidated3pid`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from synapse.module_api import ModuleApi

from laiwang_module.config import HomeserverConfigError, SmsConfig
from laiwang_module.log_redaction import redact_in_logs
from laiwang_module.rest.base import JsonDict, LaiwangResource, Router, Servlet
from laiwang_module.synapse_compat import (
    msisdn_delegate_url,
    server_key,
    set_msisdn_delegate_url,
)
from rooms.msisdn import (
    delegate_secret_from,
    require_client_secret,
    validate_request_token,
    validate_submit_token,
)
from rooms.validation import require_str

if TYPE_CHECKING:
    from synapse.http.site import SynapseRequest

    from laiwang_module.server import LaiwangServer

IDENTITY_PREFIX = "/_synapse/client/laiwang/identity"
_V1 = "/_matrix/identity/api/v1"


class MsisdnClientServlet(Servlet):
    """Under /_synapse/client/laiwang/v1, with the user's access token."""

    def register(self, router: Router) -> None:
        router.add("POST", "/msisdn/requestToken", self.on_request_token)

    async def on_request_token(self, request: SynapseRequest) -> tuple[int, JsonDict]:
        user_id = await self.auth(request)
        token_request = validate_request_token(self.json_body(request))
        return 200, await self.server.msisdn_handler.request_token_for_user(user_id, token_request)


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


def set_up_delegate(api: ModuleApi, config: SmsConfig) -> str:
    """The delegate secret; points Synapse's `account_threepid_delegates.msisdn` at it and
    keeps it (and the gateway's credentials) out of the logs. Raises a ConfigError when Synapse's
    setting names this module's endpoints with another secret."""
    secret = config.delegate_secret or delegate_secret_from(server_key(api))
    hidden = [secret]
    if config.http is not None:
        gateway = urlsplit(config.http.url)
        hidden += [gateway.query, gateway.password or "", config.http.bearer_token or ""]
    redact_in_logs(hidden)
    url = msisdn_delegate_url(api)
    if url is None:
        return secret
    path = urlsplit(url).path.rstrip("/")
    if path.endswith(IDENTITY_PREFIX):
        set_msisdn_delegate_url(api, f"{url.rstrip('/')}/{secret}")
    elif IDENTITY_PREFIX + "/" in path and not path.endswith(f"{IDENTITY_PREFIX}/{secret}"):
        raise HomeserverConfigError(
            "account_threepid_delegates.msisdn names the laiwang validation endpoints with a"
            f" secret that is not sms.delegate_secret: set it to <public base URL>{IDENTITY_PREFIX}"
            " (the module adds the secret)",
            ("account_threepid_delegates", "msisdn"),
        )
    return secret


def build_identity_resource(server: LaiwangServer, secret: str) -> LaiwangResource:
    router = Router()
    MsisdnServlet(server).register(router)
    return LaiwangResource(router, f"{IDENTITY_PREFIX}/{secret}")
