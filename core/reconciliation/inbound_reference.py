"""A customer account's inbound reference: the code a payer at another bank writes in the
payment's reference so the money lands in that account (GET /accounts/{id} ``inbound_reference``).

Derived from the account's id, so it needs no column and never changes: ``BK``, two ISO 7064
mod 97-10 check digits (as an IBAN's, computed by schwifty) and the id in base 32 (RFC 4648,
26 characters). The check digits turn a mistyped reference into no match instead of another
customer's account."""

from __future__ import annotations

import base64
import binascii
import re
import uuid

from schwifty.checksum import ISO7064_mod97_10

PREFIX = "BK"
_CHECK = ISO7064_mod97_10()
# Anywhere in a reference, case and spaces as a payer may write them ("bk25 abcd ...").
_FOUND = re.compile(r"BK\s?[0-9]{2}(?:\s?[A-Z2-7]){26}", re.IGNORECASE)


def of(account_id: uuid.UUID) -> str:
    body = base64.b32encode(account_id.bytes).decode("ascii").rstrip("=")
    return f"{PREFIX}{_CHECK.compute([body, PREFIX])}{body}"


def account_named(text: str | None) -> uuid.UUID | None:
    """The account id the first well-formed inbound reference in ``text`` names; None if none
    does (or its check digits are wrong)."""
    for match in _FOUND.finditer(text or ""):
        code = re.sub(r"\s", "", match.group()).upper()
        digits, body = code[2:4], code[4:]
        if not _CHECK.validate([body, PREFIX], digits):
            continue
        try:
            return uuid.UUID(bytes=base64.b32decode(body + "======"))
        except (binascii.Error, ValueError):
            continue
    return None
