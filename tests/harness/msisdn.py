"""Giving users phone numbers: binding one as a client does (a code from the module's
requestToken, read from the log sender; Synapse's submit_token and /account/3pid/add, with the
module as the msisdn delegate), or setting them as an admin."""

from __future__ import annotations

import re
import secrets
from typing import Any
from urllib.parse import quote

from rooms.msisdn import delegate_secret_from
from tests.harness.client import MatrixClient, MatrixError, wait_until
from tests.harness.servers import TestHomeserver

CLIENT = "/_matrix/client/v3"
IDENTITY = "/_synapse/client/laiwang/identity"
# The module's requestToken for logged-in users; Synapse's /account/3pid/msisdn/requestToken is
# closed (it tells bound numbers from free ones).
REQUEST_TOKEN = "/_synapse/client/laiwang/v1/msisdn/requestToken"


def delegate_prefix(hs: TestHomeserver) -> str:
    """Where the validation endpoints of a server without `sms.delegate_secret` answer: under
    the secret derived from its macaroon secret (the test servers set none, so Synapse falls
    back to the registration shared secret)."""
    secret = delegate_secret_from(hs.spec.registration_shared_secret.encode())
    return f"{IDENTITY}/{secret}"


def new_number() -> tuple[str, str]:
    """A fresh Chinese mobile number: (national form, msisdn)."""
    national = "138" + "".join(secrets.choice("0123456789") for _ in range(8))
    return national, "86" + national


def code_from_log(hs: TestHomeserver, sid: str) -> str:
    def find() -> str | None:
        m = re.search(rf"code (\d+) for session {re.escape(sid)} ", hs.process.log())
        return m.group(1) if m else None

    return wait_until(find, timeout=10)


def request_token(user: MatrixClient, national: str, secret: str, attempt: int = 1) -> dict:
    return user.call(
        "POST",
        REQUEST_TOKEN,
        {
            "client_secret": secret,
            "country": "CN",
            "phone_number": national,
            "send_attempt": attempt,
        },
    )


def submit_token(user: MatrixClient, secret: str, sid: str, token: str) -> dict:
    return user.call(
        "POST",
        "/_matrix/client/unstable/add_threepid/msisdn/submit_token",
        {"client_secret": secret, "sid": sid, "token": token},
    )


def add_threepid(user: MatrixClient, secret: str, sid: str) -> None:
    body: dict[str, Any] = {"client_secret": secret, "sid": sid}
    r = user.raw("POST", f"{CLIENT}/account/3pid/add", body)
    if r.status_code == 401:  # user-interactive auth: confirm with the password
        body["auth"] = {
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": user.user_id},
            "password": user.password,  # type: ignore[attr-defined]
            "session": r.json()["session"],
        }
        r = user.raw("POST", f"{CLIENT}/account/3pid/add", body)
    if r.status_code >= 400:
        raise MatrixError(r)


def bind_phone(hs: TestHomeserver, user: MatrixClient) -> str:
    """Bind a fresh number with the client API, as any client's "add phone" screen does."""
    national, msisdn = new_number()
    secret = secrets.token_hex(16)
    reply = request_token(user, national, secret)
    assert reply["msisdn"] == msisdn and reply["submit_url"]
    assert submit_token(user, secret, reply["sid"], code_from_log(hs, reply["sid"])) == {
        "success": True
    }
    add_threepid(user, secret, reply["sid"])
    return msisdn


def threepids(user: MatrixClient) -> list[dict]:
    return list(user.call("GET", f"{CLIENT}/account/3pid")["threepids"])


def admin_set_msisdns(admin: MatrixClient, user_id: str, msisdns: list[str]) -> None:
    admin.call(
        "PUT",
        f"/_synapse/admin/v2/users/{quote(user_id)}",
        {"threepids": [{"medium": "msisdn", "address": m} for m in msisdns]},
    )
