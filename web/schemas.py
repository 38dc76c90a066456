"""Marshmallow schemas at the edge: they validate input (unknown fields rejected) and shape output."""

from __future__ import annotations

import enum
import re
from datetime import UTC
from typing import Any

import marshmallow as ma
from marshmallow import fields, validate

from core.accounts.limits import available
from core.models import AccountStatus, KycStatus, Role, TransferKind, TransferStatus, UserStatus
from core.money import CURRENCIES, MAX_AMOUNT
from core.pagination import MAX_LIMIT
from core.reconciliation import inbound_reference
from core.transfers.batch import MAX_ITEMS as MAX_BATCH_ITEMS
from core.transfers.refund import MAX_REASON_LENGTH
from core.transfers.submit import MAX_HOLD_SECONDS, MIN_HOLD_SECONDS
from web.metadata_field import MetadataIn, metadata_out


class FullMatch(validate.Regexp):
    """A pattern the whole value must match, published as is in the OpenAPI schema.

    The pattern is written for every regex dialect (ECMA-262 for client generators and fuzzers:
    ``\\Z`` means a literal "Z" there), so it anchors with ``^…$``; validation uses
    ``fullmatch``, so ``$`` cannot accept a trailing newline ("USD\\n")."""

    def __call__(self, value: Any) -> Any:  # str in, str out, as Regexp's
        if self.regex.fullmatch(value) is None:
            raise ma.ValidationError(self._format_error(value))
        return value


# The list goes into the OpenAPI spec as an enum: clients and fuzzers see the real rule.
CURRENCY = validate.OneOf(sorted(CURRENCIES), error="Must be an ISO 4217 currency code.")
PIN = FullMatch(r"^[0-9]{4,6}$", error="Must be 4 to 6 digits.")


def by_value(enum_: type[enum.Enum], **kwargs: Any) -> fields.Enum[Any]:
    """An enum member in and out by its value (the stored string), published as a string enum."""
    return fields.Enum(enum_, by_value=fields.String, **kwargs)


class KycDecision(enum.StrEnum):
    APPROVE = "APPROVE"
    REJECT = "REJECT"


class MinorUnits(fields.Integer):
    """An integer amount in minor units: floats, strings and booleans are refused."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(strict=True, validate=validate.Range(min=1, max=MAX_AMOUNT), **kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> int:
        if isinstance(value, bool):
            raise self.make_error("invalid")
        return super()._deserialize(value, attr, data, **kwargs)


class StrictInteger(fields.Integer):
    """A JSON integer: floats, strings and booleans are refused."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(strict=True, **kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> int:
        if isinstance(value, bool):
            raise self.make_error("invalid")
        return super()._deserialize(value, attr, data, **kwargs)


class StrictBoolean(fields.Boolean):
    """JSON true or false only: 1 and 0 are refused (they equal True and False in Python, so
    ``truthy={True}`` still took them), as are "true" and the other strings Boolean accepts."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> bool:
        if not isinstance(value, bool):
            raise self.make_error("invalid")
        return bool(super()._deserialize(value, attr, data, **kwargs))


class Strict(ma.Schema):
    class Meta:
        unknown = ma.RAISE


# ---- input -------------------------------------------------------------------------------


class RegisterIn(Strict):
    email = fields.Email(required=True, validate=validate.Length(max=254))
    password = fields.String(required=True, load_only=True, validate=validate.Length(min=12, max=1024))
    full_name = fields.String(required=True, validate=validate.Length(min=1, max=200))
    currency = fields.String(load_default="USD", validate=CURRENCY)


class LoginIn(Strict):
    email = fields.String(required=True, validate=validate.Length(max=254))
    password = fields.String(required=True, load_only=True, validate=validate.Length(max=1024))
    device_id = fields.String(validate=validate.Length(min=1, max=128))


class PinIn(Strict):
    pin = fields.String(required=True, load_only=True, validate=PIN)
    current_pin = fields.String(load_only=True, validate=PIN)


class OtpVerifyIn(Strict):
    challenge_id = fields.String(required=True, validate=validate.Length(min=1, max=64))
    code = fields.String(required=True, load_only=True, validate=FullMatch(r"^[0-9]{6}$", error="Must be 6 digits."))
    trust_device = StrictBoolean(load_default=False)


class OtpSettingIn(Strict):
    enabled = StrictBoolean(required=True)
    # Required to turn OTP off (checked in core: a stolen token alone must not drop the second factor).
    password = fields.String(load_only=True, validate=validate.Length(max=1024))


class PasswordChangeIn(Strict):
    current_password = fields.String(required=True, load_only=True, validate=validate.Length(max=1024))
    new_password = fields.String(required=True, load_only=True, validate=validate.Length(min=12, max=1024))


class OpenAccountIn(Strict):
    currency = fields.String(required=True, validate=CURRENCY)


class MovementIn(Strict):
    """What a customer's request to move money between two accounts names, checked one way for a
    transfer and a scheduled transfer: the accounts, the amount, its currency, the PIN, a reference.
    A subclass adds its own fields after these (the OpenAPI document lists them in this order)."""

    source_account_id = fields.UUID(required=True)
    destination_account_id = fields.UUID(required=True)
    amount = MinorUnits(required=True)
    currency = fields.String(required=True, validate=CURRENCY)
    pin = fields.String(required=True, load_only=True, validate=PIN)
    reference = fields.String(validate=validate.Length(max=140), allow_none=True)


class TransferIn(MovementIn):
    hold = StrictBoolean(
        load_default=False,
        metadata={"description": "Reserve the amount (ends HELD) instead of moving it; capture or void it later."},
    )
    hold_expires_in_seconds = StrictInteger(
        validate=validate.Range(min=MIN_HOLD_SECONDS, max=MAX_HOLD_SECONDS),
        metadata={"description": "With hold only: the hold ends EXPIRED after this long (default 86400)."},
    )
    metadata = MetadataIn()

    @ma.validates_schema
    def _expiry_needs_hold(self, data: dict[str, Any], **_: Any) -> None:
        if "hold_expires_in_seconds" in data and not data.get("hold"):
            raise ma.ValidationError("Only allowed with hold: true.", "hold_expires_in_seconds")


class CaptureIn(Strict):
    amount = MinorUnits(metadata={"description": "At most the held amount (default: all of it); the rest is released."})


class VoidIn(Strict):
    pass


class BatchItemIn(Strict):
    """One item of POST /transfers/batch: a transfer with its own idempotency key."""

    # Checked like the Idempotency-Key header (a missing or bad key is the item's 400).
    idempotency_key = fields.String(load_default=None, allow_none=True, metadata={"maxLength": 255})
    source_account_id = fields.UUID(required=True)
    destination_account_id = fields.UUID(required=True)
    amount = MinorUnits(required=True)
    currency = fields.String(required=True, validate=CURRENCY)
    reference = fields.String(validate=validate.Length(max=140), allow_none=True)
    hold = StrictBoolean(load_default=False)
    metadata = MetadataIn()


class RawItem(fields.Nested):
    """Documented as a ``BatchItemIn`` but loaded as the raw object: each item is validated on its
    own (web/transfer_batches.py), so one bad item is that item's 422, not the whole request's."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(BatchItemIn, **kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Any, partial: Any = None, **kwargs: Any) -> Any:
        if not isinstance(value, dict):
            raise ma.ValidationError("Must be an object.")
        return value


class BatchIn(Strict):
    pin = fields.String(required=True, load_only=True, validate=PIN)
    atomic = StrictBoolean(load_default=False)
    items = fields.List(RawItem(), required=True, validate=validate.Length(min=1, max=MAX_BATCH_ITEMS))


class DepositIn(Strict):
    amount = MinorUnits(required=True)
    currency = fields.String(required=True, validate=CURRENCY)
    reference = fields.String(validate=validate.Length(max=140), allow_none=True)


class RefundIn(Strict):
    amount = MinorUnits(metadata={"description": "Default: all that is still refundable."})
    reason = fields.String(
        validate=validate.Length(max=MAX_REASON_LENGTH),
        allow_none=True,
        metadata={"description": "Stored as the refund's reference and in its audit row."},
    )


class Rfc3339Instant(fields.AwareDateTime):
    """``YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`` only (API.md): ISO 8601's other forms that
    ``AwareDateTime`` takes (a space for T, no seconds, ``+0100``, week dates) are a 422."""

    _FORM = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})")

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(format="iso", **kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        if not isinstance(value, str) or not self._FORM.fullmatch(value):
            raise ma.ValidationError("Must be an RFC 3339 instant: YYYY-MM-DDTHH:MM:SS[.fraction](Z|+HH:MM|-HH:MM).")
        instant = super()._deserialize(value, attr, data, **kwargs)
        try:
            # 9999-12-31T23:59:59-01:00 is in the year 10000 in UTC: every use of it (the rule's
            # start, a comparison in UTC) raised OverflowError, a 500.
            instant.astimezone(UTC)
        except OverflowError as error:
            raise ma.ValidationError("Must be between the years 1 and 9999 in UTC.") from error
        return instant


class BalanceAsOfArgs(Strict):
    as_of = Rfc3339Instant(required=True, metadata={"description": "RFC 3339 instant."})


class MonitorIn(Strict):
    field = fields.String(required=True, validate=validate.OneOf(("balance", "available_balance")))
    operator = fields.String(required=True, validate=validate.OneOf(("lt", "lte", "gt", "gte")))
    value = StrictInteger(required=True, validate=validate.Range(min=-MAX_AMOUNT, max=MAX_AMOUNT))
    description = fields.String(validate=validate.Length(max=200), allow_none=True)


class StatementArgs(Strict):
    from_ = Rfc3339Instant(data_key="from", required=True, metadata={"description": "RFC 3339 instant, included."})
    to = Rfc3339Instant(required=True, metadata={"description": "RFC 3339 instant, excluded."})
    cursor = fields.String(
        validate=validate.Length(min=1, max=512), metadata={"description": "A page's next_cursor (JSON only)."}
    )


def _limit(**kwargs: Any) -> StrictInteger:
    """A limit or a line: an integer in minor units, null for none."""
    return StrictInteger(allow_none=True, validate=validate.Range(min=0, max=MAX_AMOUNT), **kwargs)


class OwnLimitsIn(Strict):
    per_transfer = _limit()
    daily_outgoing = _limit()
    monthly_outgoing = _limit()


class BankLimitsIn(OwnLimitsIn):
    credit_limit = _limit(metadata={"description": "The credit line; null or 0: none."})
    reason = fields.String(required=True, validate=validate.Length(min=1, max=500))


class KycDecisionIn(Strict):
    decision = by_value(KycDecision, required=True)
    reason = fields.String(validate=validate.Length(max=500), allow_none=True)


class ReasonIn(Strict):
    reason = fields.String(required=True, validate=validate.Length(min=1, max=500))


class PageArgs(ma.Schema):
    cursor = fields.String(validate=validate.Length(max=512))
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=MAX_LIMIT))


class TransferListArgs(PageArgs):
    status = by_value(TransferStatus)
    account_id = fields.UUID()
    metadata = MetadataIn(
        data_key="metadata",
        metadata={"description": "metadata[KEY]=VALUE: only transfers whose metadata has KEY equal to VALUE"},
    )

    @ma.pre_load
    def _metadata_params(self, data: Any, **_: Any) -> Any:
        """``metadata[KEY]=VALUE`` query parameters become one ``metadata`` object."""
        keys = list(data.keys()) if hasattr(data, "keys") else []
        pairs = {k[len("metadata[") : -1]: data.get(k) for k in keys if k.startswith("metadata[") and k.endswith("]")}
        if not pairs:
            return data
        rest = {k: data.get(k) for k in keys if not (k.startswith("metadata[") and k.endswith("]"))}
        return {**rest, "metadata": pairs}


class UserListArgs(PageArgs):
    kyc_status = by_value(KycStatus)


class AuditListArgs(PageArgs):
    entity_id = fields.String(validate=validate.Length(max=64))
    action = fields.String(validate=validate.Length(max=64))


# ---- output ------------------------------------------------------------------------------


class UserOut(ma.Schema):
    id = fields.UUID()
    email = fields.String()
    full_name = fields.String()
    role = by_value(Role)
    kyc_status = by_value(KycStatus)
    status = by_value(UserStatus)
    pin_set = fields.Function(lambda user: user.pin_hash is not None, metadata={"type": "boolean"})
    otp_enabled = fields.Boolean()
    created_at = fields.DateTime()


class AccountOut(ma.Schema):
    id = fields.UUID()
    user_id = fields.UUID()
    currency = fields.String()
    balance = fields.Integer()
    # Balance less the account's open holds, plus its credit line: what new transfers may spend.
    available_balance = fields.Function(
        lambda account: available(account.balance, account.held_amount, account.credit_limit),
        metadata={"type": "integer"},
    )
    credit_limit = fields.Integer()
    status = by_value(AccountStatus)
    created_at = fields.DateTime()
    metadata = metadata_out()
    inbound_reference = fields.Function(
        lambda account: inbound_reference.of(account.id),
        metadata={
            "type": "string",
            "description": "The code a payer at another bank writes in the payment's reference so the money lands"
            " here (matched on the correspondent bank's statement).",
        },
    )


class TransferOut(ma.Schema):
    id = fields.UUID()
    kind = by_value(TransferKind)
    source_account_id = fields.UUID()
    destination_account_id = fields.UUID()
    amount = fields.Integer()
    currency = fields.String()
    reference = fields.String(allow_none=True)
    status = by_value(TransferStatus)
    failure_code = fields.String(allow_none=True)
    failure_detail = fields.Dict(
        allow_none=True, metadata={"description": "The limit broken: {limit, limit_amount, used, requested}."}
    )
    hold = fields.Boolean()
    hold_expires_at = fields.DateTime(allow_none=True)
    captured_amount = fields.Integer(allow_none=True)
    refund_of = fields.UUID(allow_none=True)
    batch_id = fields.UUID(allow_none=True)
    created_at = fields.DateTime()
    completed_at = fields.DateTime(allow_none=True)
    metadata = metadata_out()


class EntryOut(ma.Schema):
    id = fields.UUID()
    transfer_id = fields.UUID()
    amount = fields.Integer()
    balance_after = fields.Integer()
    created_at = fields.DateTime()


class AuditOut(ma.Schema):
    id = fields.Integer()
    occurred_at = fields.DateTime()
    actor_id = fields.UUID(allow_none=True)
    action = fields.String()
    entity_type = fields.String()
    entity_id = fields.String(allow_none=True)
    request_id = fields.String(allow_none=True)
    details = fields.Dict()


class RegisterOut(ma.Schema):
    user = fields.Nested(UserOut)
    account = fields.Nested(AccountOut)


class TokensOut(ma.Schema):
    access_token = fields.String()
    refresh_token = fields.String()
    token_type = fields.String()
    expires_in = fields.Integer()


class DeviceOut(ma.Schema):
    id = fields.UUID()
    device_id = fields.String()
    trusted_at = fields.DateTime()
    last_seen_at = fields.DateTime()


class ProblemOut(ma.Schema):
    """RFC 9457 problem details, the body of every error (web/problems.py); may carry extension members."""

    class Meta:
        unknown = ma.INCLUDE

    type = fields.String(required=True)
    title = fields.String(required=True)
    status = fields.Integer(required=True)
    code = fields.String(required=True)
    detail = fields.String(required=True)
    errors = fields.Dict(
        keys=fields.String(),
        values=fields.Raw(),
        metadata={"description": "With VALIDATION_ERROR (and BAD_REQUEST): the messages, by field."},
    )
    challenge_id = fields.String(metadata={"description": "With OTP_REQUIRED: the challenge to answer."})
    refundable = fields.Integer(metadata={"description": "With REFUND_EXCEEDS_AMOUNT: what is still refundable."})
    limit = fields.String(metadata={"description": "With LIMIT_EXCEEDED: the limit broken (e.g. per_transfer)."})
    limit_amount = fields.Integer(metadata={"description": "With LIMIT_EXCEEDED: the limit, in minor units."})
    requested = fields.Integer(metadata={"description": "With LIMIT_EXCEEDED: the amount asked for."})
    checks = fields.Dict(
        keys=fields.String(), values=fields.String(), metadata={"description": "With readyz's 503: each check."}
    )


class HealthOut(ma.Schema):
    status = fields.String()
    checks = fields.Dict(keys=fields.String(), values=fields.String())


class BatchItemOut(ma.Schema):
    status = fields.Integer(metadata={"description": "202 accepted, 200 replay, or the item's error status"})
    transfer = fields.Nested(TransferOut)
    error = fields.Nested(ProblemOut)


class BatchOut(ma.Schema):
    items = fields.List(fields.Nested(BatchItemOut), metadata={"description": "One result per item, in order."})


class BalanceAsOfOut(ma.Schema):
    account_id = fields.UUID()
    currency = fields.String()
    as_of = fields.DateTime()
    balance = fields.Integer()


class MonitorOut(ma.Schema):
    id = fields.UUID()
    account_id = fields.UUID()
    field = fields.String()
    operator = fields.String()
    value = fields.Integer()
    description = fields.String(allow_none=True)
    created_at = fields.DateTime()
    last_triggered_at = fields.DateTime(allow_none=True)


class MonitorList(ma.Schema):
    items = fields.List(fields.Nested(MonitorOut))


class LimitCapsOut(ma.Schema):
    per_transfer = fields.Integer(allow_none=True)
    daily_outgoing = fields.Integer(allow_none=True)
    monthly_outgoing = fields.Integer(allow_none=True)


class LimitsOut(LimitCapsOut):
    account_id = fields.UUID()
    currency = fields.String()
    credit_limit = fields.Integer()
    used_today = fields.Integer()
    used_this_month = fields.Integer()
    bank_caps = fields.Nested(LimitCapsOut)


class DepositOut(ma.Schema):
    transfer = fields.Nested(TransferOut)


def page_of(item: type[ma.Schema], name: str) -> type[ma.Schema]:
    return ma.Schema.from_dict(
        {"items": fields.List(fields.Nested(item)), "next_cursor": fields.String(allow_none=True)},
        name=name,
    )


DeviceList = ma.Schema.from_dict({"items": fields.List(fields.Nested(DeviceOut))}, name="DeviceList")
AccountList = ma.Schema.from_dict({"items": fields.List(fields.Nested(AccountOut))}, name="AccountList")
TransferPage = page_of(TransferOut, "TransferPage")
EntryPage = page_of(EntryOut, "EntryPage")
UserPage = page_of(UserOut, "UserPage")
AuditPage = page_of(AuditOut, "AuditPage")


# ---- statements and audit proofs ---------------------------------------------------------------


class StatementEntryOut(ma.Schema):
    id = fields.UUID()
    transfer_id = fields.UUID()
    amount = fields.Integer(metadata={"description": "Signed: a debit is negative."})
    balance_after = fields.Integer()
    reference = fields.String(allow_none=True)
    created_at = fields.DateTime()


class StatementOut(ma.Schema):
    account_id = fields.UUID()
    currency = fields.String()
    from_ = fields.DateTime(attribute="start", data_key="from")
    to = fields.DateTime(attribute="end")
    opening_balance = fields.Integer(metadata={"description": "Balance at `from` (the period's, on every page)."})
    closing_balance = fields.Integer(
        allow_none=True,
        metadata={"description": "opening_balance + the period's entries; on the last page only (null before)."},
    )
    entries = fields.List(fields.Nested(StatementEntryOut), metadata={"description": "Oldest first."})
    next_cursor = fields.String(
        metadata={"description": "Present while the period has more entries: send the same request with cursor=."}
    )

    @ma.post_dump
    def _last_page_has_no_cursor(self, data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        if data.get("next_cursor") is None:
            data.pop("next_cursor", None)
        return data


class ProofStepOut(ma.Schema):
    side = fields.String(metadata={"description": "Where the sibling sits: left or right."})
    sibling = fields.String(metadata={"description": "Hex SHA-256 of the sibling node."})


class AuditRootOut(ma.Schema):
    n = fields.Integer(metadata={"description": "The batch's number: n - 1 is the previous one, no gaps."})
    root = fields.String(metadata={"description": "Hex; commits to previous_root (see merkle_root)."})
    previous_root = fields.String(allow_none=True, metadata={"description": "Batch n - 1's root (null: first)."})
    sealed_at = fields.DateTime()
    leaf_version = fields.Integer(
        metadata={"description": "2: row hashes a client recomputes; 1: sealed before, checked by the server only."}
    )
    merkle_root = fields.String(
        metadata={
            "description": "RFC 6962 root of the batch's row hashes. Version 2: root = node(previous_root or 32 zero"
            " bytes, node(merkle_root, context_root)), node(l, r) = sha256(0x01 || l || r); version 1: root ="
            " sha256(previous_root or 32 zero bytes || merkle_root)."
        }
    )
    context_root = fields.String(
        allow_none=True, metadata={"description": "Version 2: root of the hashes of what the records do not show."}
    )


class TransferAuditItemOut(ma.Schema):
    seq = fields.Integer(allow_none=True, metadata={"description": "Place in the audit chain; null until sealed."})
    action = fields.String()
    occurred_at = fields.String(metadata={"description": "RFC 3339, UTC, microseconds: the text that is hashed."})
    details = fields.Dict()
    row_hash = fields.String(
        allow_none=True,
        metadata={
            "description": "Hex SHA-256 of the RFC 8785 canonical JSON of the item without row_hash, sealed_batch"
            " and proof (leaf version 2); null until sealed."
        },
    )
    sealed_batch = fields.Integer(allow_none=True, metadata={"description": "The n of the root the proof leads to."})
    proof = fields.List(
        fields.Nested(ProofStepOut),
        allow_none=True,
        metadata={
            "description": "From the leaf sha256(0x00 || row_hash) up: version 2 to the batch's root, version 1 to"
            " its merkle_root."
        },
    )


class TransferAuditOut(ma.Schema):
    items = fields.List(fields.Nested(TransferAuditItemOut))
    root = fields.Nested(AuditRootOut, allow_none=True, metadata={"description": "The newest sealed batch's root."})
