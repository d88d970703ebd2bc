"""A small synchronous Matrix client for driving real homeservers in tests."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import quote

import requests

from tests.harness.openapi import check_response

T = TypeVar("T")

LAIWANG = "/_synapse/client/laiwang/v1"


class MatrixError(Exception):
    def __init__(self, response: requests.Response):
        self.status = response.status_code
        try:
            self.body = response.json()
        except ValueError:
            self.body = {"raw": response.text}
        self.errcode = self.body.get("errcode")
        super().__init__(f"{self.status} {self.body}")


def wait_until(check: Callable[[], T | None], timeout: float = 30.0, interval: float = 0.2) -> T:
    """Poll `check` until it returns something truthy; federation and background jobs lag."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
        except (MatrixError, AssertionError) as e:
            last_error = e
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s (last error: {last_error})")


class MatrixClient:
    def __init__(
        self,
        base_url: str,
        user_id: str,
        access_token: str | None,
        params: dict[str, Any] | None = None,
    ):
        self.base_url = base_url
        self.user_id = user_id
        self.access_token = access_token
        # Query parameters of every request (an application service's `user_id`).
        self.params = params or {}
        self.session = requests.Session()

    # --- raw requests ---

    # The benchmarks turn the check off: validating a large answer (10,000 balances) takes the
    # client far longer than the server took to make it.
    validate_responses = True

    def raw(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        data: bytes | None = None,
        params: dict[str, Any] | None = None,
        auth: bool = True,
    ) -> requests.Response:
        headers = {}
        if auth and self.access_token:
            headers["Authorization"] = f"Bearer {self.access_token}"
        response = self.session.request(
            method,
            self.base_url + path,
            json=body if data is None else None,
            data=data,
            params={**self.params, **(params or {})},
            headers=headers,
            timeout=60,
        )
        # Every laiwang response must be one openapi.json declares (tests/harness/openapi.py).
        if self.validate_responses:
            check_response(method, path.split("?", 1)[0], response)
        return response

    def call(self, method: str, path: str, body: Any = None, **kw: Any) -> dict[str, Any]:
        r = self.raw(method, path, body, **kw)
        if r.status_code >= 400:
            raise MatrixError(r)
        return dict(r.json())

    def laiwang(self, method: str, path: str, body: Any = None, **kw: Any) -> dict[str, Any]:
        return self.call(method, LAIWANG + path, body, **kw)

    def laiwang_raw(self, method: str, path: str, body: Any = None, **kw: Any) -> requests.Response:
        return self.raw(method, LAIWANG + path, body, **kw)

    # --- Matrix client-server API ---

    def create_room(self, **body: Any) -> str:
        return str(self.call("POST", "/_matrix/client/v3/createRoom", body)["room_id"])

    def invite(self, room_id: str, user_id: str) -> None:
        self.call("POST", f"/_matrix/client/v3/rooms/{quote(room_id)}/invite", {"user_id": user_id})

    def join(self, room_id: str, via: list[str] | None = None) -> str:
        params = {"server_name": via} if via else None
        return str(
            self.call("POST", f"/_matrix/client/v3/join/{quote(room_id)}", {}, params=params)[
                "room_id"
            ]
        )

    def join_invited(self, room_id: str, via: list[str], timeout: float = 60.0) -> str:
        """Join a room this user was invited to from another server. The inviting server
        persists the invite only after this user's server has accepted it, so a join in that
        window is refused ("You are not invited"): try again until the invite is there too."""
        return wait_until(lambda: self.join(room_id, via=via), timeout=timeout)

    def leave(self, room_id: str) -> None:
        self.call("POST", f"/_matrix/client/v3/rooms/{quote(room_id)}/leave", {})

    def send(
        self, room_id: str, content: dict[str, Any], event_type: str = "m.room.message"
    ) -> str:
        txn = uuid.uuid4().hex
        path = f"/_matrix/client/v3/rooms/{quote(room_id)}/send/{event_type}/{txn}"
        return str(self.call("PUT", path, content)["event_id"])

    def send_text(self, room_id: str, text: str) -> str:
        return self.send(room_id, {"msgtype": "m.text", "body": text})

    def state(self, room_id: str, event_type: str, state_key: str = "") -> dict[str, Any]:
        return self.call(
            "GET", f"/_matrix/client/v3/rooms/{quote(room_id)}/state/{event_type}/{state_key}"
        )

    def put_state(
        self, room_id: str, event_type: str, content: dict[str, Any], state_key: str = ""
    ) -> str:
        path = f"/_matrix/client/v3/rooms/{quote(room_id)}/state/{event_type}/{state_key}"
        return str(self.call("PUT", path, content)["event_id"])

    def messages(self, room_id: str, limit: int = 50) -> list[dict[str, Any]]:
        r = self.call(
            "GET",
            f"/_matrix/client/v3/rooms/{quote(room_id)}/messages",
            params={"dir": "b", "limit": limit},
        )
        return list(r["chunk"])

    def event(self, room_id: str, event_id: str) -> dict[str, Any]:
        return self.call(
            "GET", f"/_matrix/client/v3/rooms/{quote(room_id)}/event/{quote(event_id)}"
        )

    def joined_members(self, room_id: str) -> set[str]:
        r = self.call("GET", f"/_matrix/client/v3/rooms/{quote(room_id)}/joined_members")
        return set(r["joined"])

    def membership(self, room_id: str, user_id: str) -> str | None:
        try:
            return str(self.state(room_id, "m.room.member", user_id).get("membership"))
        except MatrixError as e:
            if e.status in (403, 404):
                return None
            raise

    def invited_rooms(self) -> set[str]:
        # A fresh filter each time: Synapse caches identical initial syncs for a while.
        no_cache = json.dumps({"account_data": {"not_types": [uuid.uuid4().hex]}})
        r = self.call("GET", "/_matrix/client/v3/sync", params={"timeout": 0, "filter": no_cache})
        return set(r.get("rooms", {}).get("invite", {}))

    def set_account_data(self, event_type: str, content: dict[str, Any]) -> None:
        self.call(
            "PUT",
            f"/_matrix/client/v3/user/{quote(self.user_id)}/account_data/{event_type}",
            content,
        )
