"""One exception type per problem ``code`` (RFC 9457 documents from the API), each carrying the document."""

from __future__ import annotations

from typing import Any


class BankError(Exception):
    """A problem document the API answered with (or, with status 0, no answer at all)."""

    code = "BANK_ERROR"

    def __init__(self, problem: dict[str, Any], status: int) -> None:
        super().__init__(f"{status} {problem.get('code', self.code)}: {problem.get('detail', '')}")
        self.problem = problem
        self.status = status
        self.detail: str = str(problem.get("detail", ""))
        self.errors: Any = problem.get("errors")


class TransportFailed(BankError):
    """No usable answer after every allowed retry (network errors, 5xx, 429/503)."""

    code = "TRANSPORT_FAILED"


def _error(name: str, code: str) -> type[BankError]:
    return type(name, (BankError,), {"code": code, "__doc__": f"The API answered ``{code}``."})


BadRequest = _error("BadRequest", "BAD_REQUEST")
ValidationError = _error("ValidationError", "VALIDATION_ERROR")
Unauthorized = _error("Unauthorized", "UNAUTHORIZED")
Forbidden = _error("Forbidden", "FORBIDDEN")
NotFound = _error("NotFound", "NOT_FOUND")
Conflict = _error("Conflict", "CONFLICT")
IdempotencyKeyRequired = _error("IdempotencyKeyRequired", "IDEMPOTENCY_KEY_REQUIRED")
IdempotencyKeyReused = _error("IdempotencyKeyReused", "IDEMPOTENCY_KEY_REUSED")
InvalidPin = _error("InvalidPin", "INVALID_PIN")
PinLocked = _error("PinLocked", "PIN_LOCKED")
PinNotSet = _error("PinNotSet", "PIN_NOT_SET")
KycNotApproved = _error("KycNotApproved", "KYC_NOT_APPROVED")
AccountInactive = _error("AccountInactive", "ACCOUNT_INACTIVE")
CurrencyMismatch = _error("CurrencyMismatch", "CURRENCY_MISMATCH")
SameAccount = _error("SameAccount", "SAME_ACCOUNT")
OtpRequired = _error("OtpRequired", "OTP_REQUIRED")
InvalidOtp = _error("InvalidOtp", "INVALID_OTP")
RateLimited = _error("RateLimited", "RATE_LIMITED")
PayloadTooLarge = _error("PayloadTooLarge", "PAYLOAD_TOO_LARGE")
UnsupportedMediaType = _error("UnsupportedMediaType", "UNSUPPORTED_MEDIA_TYPE")
ServiceUnavailable = _error("ServiceUnavailable", "SERVICE_UNAVAILABLE")
TransferNotHeld = _error("TransferNotHeld", "TRANSFER_NOT_HELD")
RefundExceedsAmount = _error("RefundExceedsAmount", "REFUND_EXCEEDS_AMOUNT")
LimitExceeded = _error("LimitExceeded", "LIMIT_EXCEEDED")
LimitAboveBankCap = _error("LimitAboveBankCap", "LIMIT_ABOVE_BANK_CAP")
ScheduleInvalid = _error("ScheduleInvalid", "SCHEDULE_INVALID")
ReconciliationFileInvalid = _error("ReconciliationFileInvalid", "RECONCILIATION_FILE_INVALID")
InternalError = _error("InternalError", "INTERNAL_ERROR")
GenericError = _error("GenericError", "ERROR")
Locked = _error("Locked", "LOCKED")
LinkedFailed = _error("LinkedFailed", "LINKED_FAILED")
MethodNotAllowed = _error("MethodNotAllowed", "METHOD_NOT_ALLOWED")
NotAcceptable = _error("NotAcceptable", "NOT_ACCEPTABLE")

BY_CODE: dict[str, type[BankError]] = {
    cls.code: cls
    for cls in (
        BadRequest, ValidationError, Unauthorized, Forbidden, NotFound, Conflict, IdempotencyKeyRequired,
        IdempotencyKeyReused, InvalidPin, PinLocked, PinNotSet, KycNotApproved, AccountInactive,
        CurrencyMismatch, SameAccount, OtpRequired, InvalidOtp, RateLimited, PayloadTooLarge,
        UnsupportedMediaType, ServiceUnavailable, TransferNotHeld, RefundExceedsAmount, LimitExceeded,
        LimitAboveBankCap, ScheduleInvalid, ReconciliationFileInvalid, InternalError, GenericError, Locked,
        LinkedFailed, MethodNotAllowed, NotAcceptable,
    )
}  # fmt: skip


def error_for(problem: dict[str, Any], status: int) -> BankError:
    """The exception for a problem document: its code's type, or BankError for a code this version does not know."""
    return BY_CODE.get(str(problem.get("code")), BankError)(problem, status)
