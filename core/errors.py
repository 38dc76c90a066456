"""Domain errors with a stable machine-readable code and the HTTP status they map to."""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    code = "BAD_REQUEST"
    status = 400
    title = "Bad Request"

    def __init__(self, detail: str | None = None, **extra: Any) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.extra = extra


class ValidationFailed(DomainError):
    code, status, title = "VALIDATION_ERROR", 422, "Unprocessable Entity"


class Unauthorized(DomainError):
    code, status, title = "UNAUTHORIZED", 401, "Unauthorized"


class Forbidden(DomainError):
    code, status, title = "FORBIDDEN", 403, "Forbidden"


class NotFound(DomainError):
    code, status, title = "NOT_FOUND", 404, "Not Found"


class Conflict(DomainError):
    code, status, title = "CONFLICT", 409, "Conflict"


class IdempotencyKeyRequired(DomainError):
    code, status, title = "IDEMPOTENCY_KEY_REQUIRED", 400, "Bad Request"


class IdempotencyKeyReused(DomainError):
    code, status, title = "IDEMPOTENCY_KEY_REUSED", 422, "Unprocessable Entity"


class InvalidPin(DomainError):
    code, status, title = "INVALID_PIN", 403, "Forbidden"


class PinLocked(DomainError):
    code, status, title = "PIN_LOCKED", 423, "Locked"


class PinNotSet(DomainError):
    code, status, title = "PIN_NOT_SET", 409, "Conflict"


class KycNotApproved(DomainError):
    code, status, title = "KYC_NOT_APPROVED", 403, "Forbidden"


class TransferNotHeld(DomainError):
    """Capture or void of a transfer that is not HELD (still PENDING, or already ended)."""

    code, status, title = "TRANSFER_NOT_HELD", 409, "Conflict"


class AccountInactive(DomainError):
    code, status, title = "ACCOUNT_INACTIVE", 409, "Conflict"


class CurrencyMismatch(DomainError):
    code, status, title = "CURRENCY_MISMATCH", 422, "Unprocessable Entity"


class SameAccount(DomainError):
    code, status, title = "SAME_ACCOUNT", 422, "Unprocessable Entity"


class ServiceUnavailable(DomainError):
    code, status, title = "SERVICE_UNAVAILABLE", 503, "Service Unavailable"


class OtpRequired(DomainError):
    """The password was right but this device is not trusted: the body carries a ``challenge_id``."""

    code, status, title = "OTP_REQUIRED", 401, "Unauthorized"


class InvalidOtp(DomainError):
    code, status, title = "INVALID_OTP", 401, "Unauthorized"


class RateLimited(DomainError):
    """Too many attempts (e.g. a locked login). ``retry_after`` seconds go into the Retry-After header."""

    code, status, title = "RATE_LIMITED", 429, "Too Many Requests"

    def __init__(self, detail: str | None = None, *, retry_after: int, **extra: object) -> None:
        super().__init__(detail, **extra)
        self.retry_after = max(1, retry_after)


class RefundExceedsAmount(DomainError):
    """The refunds of a transfer (those not FAILED) would sum to more than it moved."""

    code, status, title = "REFUND_EXCEEDS_AMOUNT", 422, "Unprocessable Entity"


class NotAcceptable(DomainError):
    """No representation the client accepts (``Accept``) is offered."""

    code, status, title = "NOT_ACCEPTABLE", 406, "Not Acceptable"


class LinkedFailed(DomainError):
    """An item of an atomic batch that was valid, refused because another item was not."""

    code, status, title = "LINKED_FAILED", 424, "Failed Dependency"
