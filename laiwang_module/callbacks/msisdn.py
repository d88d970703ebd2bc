"""Who may cause a validation text through Synapse: `is_3pid_allowed` (a password-auth-provider
callback) runs in Synapse's `/register/msisdn/requestToken` and `/account/3pid/msisdn/requestToken`
before their rate limit, their "already in use" check and the call to the delegate, so refusing
there answers every number the same 403 `M_THREEPID_DENIED` and sends nothing. Logged-in users
ask the module's own endpoint instead (rest/msisdn.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from laiwang_module import metrics

if TYPE_CHECKING:
    from laiwang_module.server import LaiwangServer


class MsisdnCallbacks:
    def __init__(self, server: LaiwangServer):
        self._api = server.api
        self._handler = server.msisdn_handler

    def register(self) -> None:
        self._api.register_password_auth_provider_callbacks(is_3pid_allowed=self.is_3pid_allowed)

    async def is_3pid_allowed(self, medium: str, address: str, registration: bool) -> bool:
        allowed = self._handler.may_bind(medium, registration=registration)
        if not allowed:
            # Registration closed, or Synapse's own account requestToken (always closed).
            check, reason = (
                ("register_3pid", "registration_closed")
                if registration
                else ("account_3pid", "module_endpoint_only")
            )
            metrics.policy_refusals.labels(check, reason, "local").inc()
        return allowed
