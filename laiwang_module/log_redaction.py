"""Keeps secrets, and Synapse's lines tying a user to a phone number, out of every log line of
this process.

The msisdn delegate secret travels in the URL path (Synapse's delegate protocol has no other
place for it), so Synapse's access log (`synapse.access.*`) and its HTTP client
(`synapse.http.client`) would write it; a gateway URL may carry a key too. A logging filter on
some loggers would miss records of their children and is lost when Synapse reloads its log
config on SIGHUP, so the redaction wraps the log record factory, as Synapse itself does for log
contexts (config/logger.py): every record, from any logger, to any handler, is cleaned when it is
made.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

REDACTED = "<redacted>"

# Synapse lines that carry a phone number (with the request id, which the access log ties to
# the user), name a number's owner, or carry a client secret (Synapse 1.163:
# rest/client/account.py, handlers/ui_auth/checkers.py, handlers/identity.py): kept, with their
# arguments redacted.
_LINKING_MESSAGES = frozenset(
    {
        "MSISDN %s is already in use by %s",
        "Request #%s to verify ownership of %s",
        "MSISDN %s: got response from identity server: %s",
        "Getting validated threepid. threepidcreds: %r",
        "%s reported non-validated threepid: %s",
    }
)

_secrets: set[str] = set()
_installed = False


def redact_in_logs(secrets: Iterable[str]) -> None:
    """Redact these strings (at least 8 characters) from every log record of this process."""
    global _installed
    _secrets.update(s for s in secrets if len(s) >= 8)
    if _installed:
        return
    _installed = True
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        _clean(record)
        return record

    logging.setLogRecordFactory(factory)


def _clean(record: logging.LogRecord) -> None:
    if record.msg in _LINKING_MESSAGES:
        record.msg = str(record.msg).replace("%s", REDACTED).replace("%r", REDACTED)
        record.args = ()
        return
    try:
        message = record.getMessage()
    except Exception:
        return  # a malformed record: the handler reports it as it would have
    if any(s in message for s in _secrets):
        for s in _secrets:
            message = message.replace(s, REDACTED)
        record.msg = message
        record.args = ()
