"""Domain errors: raised anywhere below the edge, mapped to HTTP once in ``vpp.api.errors``."""

from __future__ import annotations


class DomainError(Exception):
    """Base of every error the domain raises on purpose; ``code`` is stable and machine-readable."""

    code = "domain_error"

    def __init__(self, message: str, *, details: dict[str, object] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}


class InvalidInput(DomainError):
    """The caller's input is inconsistent (departure before arrival, wrong lengths, ...)."""

    code = "invalid_input"


class NotFound(DomainError):
    """A referenced object (session, pool, bid, key, ...) does not exist."""

    code = "not_found"


class Conflict(DomainError):
    """The request clashes with stored state (duplicate name, stale version, closed gate, ...)."""

    code = "conflict"


class Forbidden(DomainError):
    """The caller is authenticated but may not do this."""

    code = "forbidden"


class Unauthorized(DomainError):
    """The caller is not authenticated (missing or unknown credentials)."""

    code = "unauthorized"


class ServiceUnavailable(DomainError):
    """A dependency (database, broker, peer) is down."""

    code = "service_unavailable"


class RateLimited(DomainError):
    """The caller sent more requests than its limit allows; it may retry after ``retry_after_s``."""

    code = "rate_limited"

    def __init__(self, message: str, *, retry_after_s: int) -> None:
        super().__init__(message, details={"retry_after_s": retry_after_s})
        self.retry_after_s = retry_after_s
