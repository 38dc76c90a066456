"""Domain errors: a stable machine-readable ``code`` and the error's data, nothing of HTTP.

Each entry point says what a code means to its callers: web/problems.py maps codes to HTTP
statuses and titles, a task or a CLI command may log or exit on them.
"""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    code = "BAD_REQUEST"

    def __init__(self, detail: str | None = None, **extra: Any) -> None:
        super().__init__(detail or self.code)
        self.detail = detail  # None: the entry point supplies its generic wording for the code
        self.extra = extra


class ValidationFailed(DomainError):
    code = "VALIDATION_ERROR"


class Unauthorized(DomainError):
    code = "UNAUTHORIZED"


class Forbidden(DomainError):
    code = "FORBIDDEN"


class NotFound(DomainError):
    code = "NOT_FOUND"


class Conflict(DomainError):
    code = "CONFLICT"


class IdempotencyKeyRequired(DomainError):
    code = "IDEMPOTENCY_KEY_REQUIRED"


class IdempotencyKeyReused(DomainError):
    code = "IDEMPOTENCY_KEY_REUSED"


class InvalidPin(DomainError):
    code = "INVALID_PIN"


class PinLocked(DomainError):
    code = "PIN_LOCKED"


class PinNotSet(DomainError):
    code = "PIN_NOT_SET"


class KycNotApproved(DomainError):
    code = "KYC_NOT_APPROVED"


class TransferNotHeld(DomainError):
    """Capture or void of a transfer that is not HELD (still PENDING, or already ended)."""

    code = "TRANSFER_NOT_HELD"


class AccountInactive(DomainError):
    code = "ACCOUNT_INACTIVE"


class CurrencyMismatch(DomainError):
    code = "CURRENCY_MISMATCH"


class SameAccount(DomainError):
    code = "SAME_ACCOUNT"


class OtpRequired(DomainError):
    """The password was right but this device is not trusted: the body carries a ``challenge_id``."""

    code = "OTP_REQUIRED"


class InvalidOtp(DomainError):
    code = "INVALID_OTP"


class RateLimited(DomainError):
    """Too many attempts (e.g. a locked login). ``retry_after``: seconds until a new attempt may succeed."""

    code = "RATE_LIMITED"

    def __init__(self, detail: str | None = None, *, retry_after: int, **extra: object) -> None:
        super().__init__(detail, **extra)
        self.retry_after = max(1, retry_after)


class RefundExceedsAmount(DomainError):
    """The refunds of a transfer (those not FAILED) would sum to more than it moved."""

    code = "REFUND_EXCEEDS_AMOUNT"


class NotAcceptable(DomainError):
    """No representation the client accepts (``Accept``) is offered."""

    code = "NOT_ACCEPTABLE"


class LinkedFailed(DomainError):
    """An item of an atomic batch that was valid, refused because another item was not."""

    code = "LINKED_FAILED"


class LimitExceeded(DomainError):
    """A transfer over the source's ``per_transfer`` limit (at accept), or over a daily or monthly
    limit (its failure code at settlement)."""

    code = "LIMIT_EXCEEDED"


class LimitAboveBankCap(DomainError):
    """An owner's own limit above the bank's cap for it."""

    code = "LIMIT_ABOVE_BANK_CAP"


class ScheduleInvalid(DomainError):
    """A schedule whose rule cannot be read, never occurs, occurs too often, or starts out of range."""

    code = "SCHEDULE_INVALID"


class ReconciliationFileInvalid(DomainError):
    """A statement file that cannot be read whole (syntax, schema, amounts, dates, currencies): the
    import writes nothing. ``line`` or ``element`` names the part at fault."""

    code = "RECONCILIATION_FILE_INVALID"
