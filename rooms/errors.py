"""Every error kind of the project, in one place: pure rules, handlers and endpoints share them.

Rules in `rooms/` and handlers raise these; they never build HTTP answers. The module's one HTTP
resource (`laiwang_module.rest.base`) turns each into its Matrix error (`status`, `errcode`, the
sentence as `error`, and `extra` as additional fields), and the event checks turn them into
spam-checker refusals with the same errcode. Nothing here imports Synapse: `rooms/` is shared
with the bridge.
"""

from __future__ import annotations

from typing import Any


class LaiwangError(Exception):
    """An error with its Matrix answer. `param` names the offending field, when there is one."""

    status = 400
    errcode = "M_UNKNOWN"

    def __init__(
        self, message: str, *, param: str | None = None, errcode: str | None = None, **extra: Any
    ):
        self.param = param
        self.message = message
        if errcode is not None:
            self.errcode = errcode
        self.extra = extra
        super().__init__(f"{param}: {message}" if param else message)

    @property
    def sentence(self) -> str:
        """The message as the client reads it: `'total' must be an integer`."""
        return f"'{self.param}' {self.message}" if self.param else self.message


class BadRequest(LaiwangError):
    """400: a request this endpoint cannot serve as asked (its own errcode says why)."""


class ValidationError(BadRequest):
    """400: input that breaks a rule, naming the field (`M_INVALID_PARAM` unless a subclass
    says otherwise)."""

    errcode = "M_INVALID_PARAM"

    def __init__(self, param: str | None, message: str, **extra: Any):
        super().__init__(message, param=param, **extra)


class InvalidParam(ValidationError):
    errcode = "M_INVALID_PARAM"


class MissingParam(ValidationError):
    errcode = "M_MISSING_PARAM"

    def __init__(self, param: str):
        super().__init__(param, "is required")


class BadJson(ValidationError):
    errcode = "M_BAD_JSON"


class NotJson(BadRequest):
    errcode = "M_NOT_JSON"


class Forbidden(LaiwangError):
    """403: the caller (or an event's sender) may not do this."""

    status = 403
    errcode = "M_FORBIDDEN"


class NotFound(LaiwangError):
    """404: no such thing, or none that the caller may see."""

    status = 404
    errcode = "M_NOT_FOUND"


class Unrecognized(LaiwangError):
    """404 for an unknown endpoint; 405 (`status=405`) for a known path with another method,
    whose `allow` lists the methods the path has (the HTTP layer's `Allow` header)."""

    status = 404
    errcode = "M_UNRECOGNIZED"

    def __init__(self, message: str, *, status: int = 404, allow: tuple[str, ...] = ()):
        super().__init__(message)
        self.status = status
        self.allow = allow


class Conflict(LaiwangError):
    """409: the request contradicts what is already recorded."""

    status = 409
    errcode = "M_CONFLICT"


class TooLarge(LaiwangError):
    """413: a request body over the configured limit."""

    status = 413
    errcode = "M_TOO_LARGE"


class LimitExceeded(LaiwangError):
    """429: a rate limit or budget; `retry_after_ms` says when trying again can succeed."""

    status = 429
    errcode = "M_LIMIT_EXCEEDED"

    def __init__(self, message: str, *, retry_after_ms: int, **extra: Any):
        super().__init__(message, retry_after_ms=retry_after_ms, **extra)


class BadGateway(LaiwangError):
    """502: another server or a gateway this request needed did not answer as it should."""

    status = 502
    errcode = "M_UNKNOWN"


class Unavailable(LaiwangError):
    """503: a service this request needs is not available now."""

    status = 503
    errcode = "M_UNAVAILABLE"
