"""Senders of validation codes by SMS: `log` (demo and tests) and `http` (a production gateway).

The log sender writes the code with the session id and a masked number (never the whole number)
to Synapse's log and, if configured, as a JSON line to a file; tests read the code from there by
session id. The http sender POSTs `{"to": "+<E.164>", "text": "<message>"}` to the gateway; any 2xx
status is success (the answer's body is ignored).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Protocol

from synapse.logging.context import make_deferred_yieldable
from synapse.module_api import ModuleApi
from twisted.web.client import PartialDownloadError, readBody
from twisted.web.http_headers import Headers

from laiwang_module import metrics
from laiwang_module.config import SmsConfig
from rooms.errors import BadGateway
from rooms.msisdn import masked

logger = logging.getLogger(__name__)


class SmsSender(Protocol):
    async def send(self, sid: str, msisdn: str, code: str) -> None: ...


class LogSmsSender:
    def __init__(self, config: SmsConfig, api: ModuleApi):
        self._file = Path(config.file) if config.file else None
        self._api = api

    async def send(self, sid: str, msisdn: str, code: str) -> None:
        logger.warning(
            "laiwang log SMS sender (not for production): code %s for session %s to %s",
            code,
            sid,
            masked(msisdn),
        )
        if self._file is not None:
            line = {
                "sid": sid,
                "code": code,
                "to": masked(msisdn),
                "ts": self._api.get_current_time_msec(),
            }
            with self._file.open("a", encoding="utf-8") as f:
                f.write(json.dumps(line) + "\n")
        metrics.sms_texts.labels("log", "sent").inc()


class HttpSmsSender:
    def __init__(self, config: SmsConfig, api: ModuleApi):
        assert config.http is not None
        self._url = config.http.url
        self._headers: dict[bytes, list[bytes]] = {}
        if config.http.bearer_token:
            self._headers[b"Authorization"] = [f"Bearer {config.http.bearer_token}".encode()]
        self._message = config.message
        self._api = api

    async def send(self, sid: str, msisdn: str, code: str) -> None:
        body = {"to": "+" + msisdn, "text": self._message.replace("{code}", code)}
        headers = Headers({b"Content-Type": [b"application/json"], **self._headers})
        try:
            response = await self._api.http_client.request(
                "POST", self._url, data=json.dumps(body).encode(), headers=headers
            )
            try:
                await make_deferred_yieldable(readBody(response))
            except PartialDownloadError:
                pass  # a gateway that answers without a length; only the status matters
            status = response.code
        except Exception as e:
            logger.warning("SMS gateway unreachable for session %s: %s", sid, e)
            status = 0
        if not 200 <= status < 300:
            logger.warning(
                "SMS gateway answered %s for session %s to %s", status, sid, masked(msisdn)
            )
            metrics.sms_texts.labels("http", "failed").inc()
            raise BadGateway("The SMS gateway did not accept the message")
        metrics.sms_texts.labels("http", "sent").inc()


def build_sender(config: SmsConfig, api: ModuleApi) -> SmsSender:
    if config.sender == "http":
        return HttpSmsSender(config, api)
    return LogSmsSender(config, api)
