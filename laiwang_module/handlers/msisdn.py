"""Validation of phone numbers: the module's own requestToken for logged-in users, and the
endpoints Synapse calls as its `account_threepid_delegates.msisdn`.

A logged-in client asks the module for a code (`request_token_for_user`: Synapse's own
`/account/3pid/msisdn/requestToken` is closed, see `may_bind`), submits it through Synapse's
`add_threepid/msisdn/submit_token` (proxied here) and calls `/account/3pid/add`, for which Synapse
asks `getValidated3pid` here. A session's code expires after
`sms.code_ttl`; after `sms.max_attempts` wrong codes the session is dead (a new requestToken
starts a new one, with a new SMS). A wrong code changes nothing but the attempt count.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from laiwang_module import metrics
from laiwang_module.sms import SmsSender, build_sender
from laiwang_module.storage.discovery import DAY_MS
from laiwang_module.storage.msisdn import MsisdnSession
from laiwang_module.synapse_compat import is_shadow_banned, server_key
from rooms.errors import BadRequest, LimitExceeded, NotFound
from rooms.msisdn import (
    MEDIUM,
    SubmitToken,
    TokenRequest,
    calling_code,
    code_hash,
    code_matches,
    derive_key,
    international_format,
    new_code,
    new_sid,
    seal_address,
    session_lookup_key,
    sms_number_key,
    sms_user_key,
    unseal_address,
)

if TYPE_CHECKING:
    from laiwang_module.server import LaiwangServer

logger = logging.getLogger(__name__)

NO_VALID_SESSION = "M_NO_VALID_SESSION"
SESSION_EXPIRED = "M_SESSION_EXPIRED"
SESSION_NOT_VALIDATED = "M_SESSION_NOT_VALIDATED"


def _no_session() -> NotFound:
    # Unknown sid and wrong client secret look the same: no oracle for either.
    return NotFound("No such validation session", errcode=NO_VALID_SESSION)


class MsisdnHandler:
    def __init__(self, server: LaiwangServer):
        self._store = server.store
        self._api = server.api
        self._config = server.config.sms
        self.sender: SmsSender = build_sender(self._config, server.api)
        self._key = derive_key(server_key(server.api), "msisdn")

    def may_bind(self, medium: str, *, registration: bool) -> bool:
        """Whether Synapse may start validating an address (its `is_3pid_allowed`, asked before
        Synapse looks the address up). Never for a phone number on a logged-in account:
        Synapse's `/account/3pid/msisdn/requestToken` answers a number bound to someone else
        400 `M_THREEPID_IN_USE` (or, with `request_token_inhibit_3pid_errors`, after a sleep
        that a free number does not get), an oracle for hidden users' numbers; the module's own
        endpoint replaces it. At registration only with `sms.allow_registration`, since that
        endpoint needs no login."""
        if medium != MEDIUM:
            return True
        return registration and self._config.allow_registration

    def _now(self) -> int:
        return int(self._api.get_current_time_msec())

    def _usable(self, session: MsisdnSession, now: int) -> bool:
        return session.expires_ts > now and session.attempts < self._config.max_attempts

    async def _send(self, sid: str, msisdn: str, code: str, user_id: str | None) -> None:
        day = self._now() // DAY_MS
        country = f"country:{calling_code(msisdn)}"
        # (what the log may name, counter key, cap): the log never names a number or a user.
        caps = [
            ("number", sms_number_key(self._key, msisdn), self._config.max_per_number_per_day),
            (country, country, self._config.max_per_country_per_day),
            ("total", "total", self._config.max_per_day),
        ]
        if user_id is not None:
            user_key = sms_user_key(self._key, user_id)
            caps.insert(0, ("account", user_key, self._config.max_per_user_per_day))
        reached = await self._store.count_sms_send([(key, cap) for _, key, cap in caps], day)
        if reached is not None:
            cap = next(name for name, key, _ in caps if key == reached)
            logger.warning("SMS daily cap reached (%s)", cap)
            # The label is the kind of cap only: a country code per series would be too many.
            metrics.sms_texts.labels(self._config.sender, "capped_" + cap.split(":")[0]).inc()
            raise LimitExceeded(
                "Too many codes sent today", retry_after_ms=(day + 1) * DAY_MS - self._now()
            )
        await self.sender.send(sid, msisdn, code)

    async def request_token_for_user(self, user_id: str, request: TokenRequest) -> dict[str, Any]:
        """`POST /msisdn/requestToken`: a logged-in user asks for a code for a number. Every
        number takes the same path, bound to anyone or to nobody: whether it is free is
        decided only when its owner, holding the code, adds it (Synapse then moves a number to
        the account that proved it). A shadow-banned user gets the same answer and causes no
        text. Raises LimitExceeded (the daily caps, this account's too), BadGateway."""
        if await is_shadow_banned(self._api, user_id):
            reply = self._token_reply(new_sid(), request.msisdn)
        else:
            reply = await self.request_token(request, user_id=user_id)
        # As Synapse answers its own endpoint: the client submits the code to Synapse, which
        # passes it to the delegate (this module).
        submit = "_matrix/client/unstable/add_threepid/msisdn/submit_token"
        return {**reply, "submit_url": self._api.public_baseurl + submit}

    async def request_token(
        self, request: TokenRequest, *, user_id: str | None = None
    ) -> dict[str, Any]:
        """`…/validate/msisdn/requestToken` (called by Synapse at registration, or for a user):
        open a validation session and text a code, or resend within the same session. Raises
        LimitExceeded (a daily SMS cap: per account, per number, per country calling code, in
        total), BadGateway (the SMS gateway refused)."""
        now = self._now()
        key = session_lookup_key(self._key, request.client_secret, request.msisdn)
        session = await self._store.get_msisdn_session(lookup_key=key)
        if session is not None and self._usable(session, now):
            if session.validated_ts is None and request.send_attempt > session.send_attempt:
                # The client asks for another SMS: a new code, the attempt count kept.
                # Sent first: a gateway failure leaves the session as it was.
                code = new_code()
                await self._send(session.sid, request.msisdn, code, user_id)
                await self._store.resend_msisdn_session(
                    session.sid,
                    request.send_attempt,
                    code_hash(session.sid, code),
                    now + self._config.code_ttl_ms,
                )
            return self._token_reply(session.sid, request.msisdn)

        sid = new_sid()
        code = new_code()
        # Sent first: a gateway failure stores nothing.
        await self._send(sid, request.msisdn, code, user_id)
        await self._store.insert_msisdn_session(
            MsisdnSession(
                sid=sid,
                lookup_key=key,
                sealed_address=seal_address(self._key, request.msisdn, request.client_secret, sid),
                code_hash=code_hash(sid, code),
                send_attempt=request.send_attempt,
                attempts=0,
                created_ts=now,
                expires_ts=now + self._config.code_ttl_ms,
                validated_ts=None,
            )
        )
        return self._token_reply(sid, request.msisdn)

    @staticmethod
    def _token_reply(sid: str, msisdn: str) -> dict[str, Any]:
        # The shape Sydent answers with; Synapse adds `submit_url` for the client.
        return {
            "success": True,
            "sid": sid,
            "msisdn": msisdn,
            "intl_fmt": international_format(msisdn),
        }

    async def _open(self, sid: str, client_secret: str) -> tuple[MsisdnSession, str]:
        session = await self._store.get_msisdn_session(sid=sid)
        if session is None:
            raise _no_session()
        msisdn = unseal_address(self._key, session.sealed_address, client_secret, sid)
        if msisdn is None:
            raise _no_session()
        return session, msisdn

    async def submit_token(self, submit: SubmitToken) -> dict[str, Any]:
        """`…/validate/msisdn/submitToken`: check a code. A wrong code answers `success: false`.
        Raises NotFound (`M_NO_VALID_SESSION`: unknown sid or wrong client secret), BadRequest
        (`M_SESSION_EXPIRED`: the code expired or too many wrong codes)."""
        session, _ = await self._open(submit.sid, submit.client_secret)
        now = self._now()
        if session.validated_ts is not None and session.expires_ts > now:
            return {"success": True}
        if session.expires_ts <= now:
            raise BadRequest("The code has expired: ask for a new one", errcode=SESSION_EXPIRED)
        if not await self._store.claim_code_attempt(submit.sid, self._config.max_attempts):
            raise BadRequest("Too many wrong codes: ask for a new one", errcode=SESSION_EXPIRED)
        if not code_matches(submit.sid, submit.token, session.code_hash):
            left = max(self._config.max_attempts - session.attempts - 1, 0)
            return {"success": False, "error": f"Wrong code ({left} attempts left)"}
        await self._store.mark_msisdn_session_validated(submit.sid, now + self._config.code_ttl_ms)
        return {"success": True}

    async def get_validated(self, sid: str, client_secret: str) -> dict[str, Any]:
        """`…/3pid/getValidated3pid`: the validated number of a session, for Synapse to bind.
        Raises NotFound (`M_NO_VALID_SESSION`), BadRequest (`M_SESSION_EXPIRED`,
        `M_SESSION_NOT_VALIDATED`)."""
        session, msisdn = await self._open(sid, client_secret)
        if session.expires_ts <= self._now():
            raise BadRequest("The validation session has expired", errcode=SESSION_EXPIRED)
        if session.validated_ts is None:
            raise BadRequest(
                "The phone number has not been validated yet", errcode=SESSION_NOT_VALIDATED
            )
        return {"medium": MEDIUM, "address": msisdn, "validated_at": session.validated_ts}
