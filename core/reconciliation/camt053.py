"""camt.053.001.02 (ISO 20022 bank-to-customer statement), validated against the official XSD
(vendored in xsd/) by lxml before anything is read from it.

One statement (``Stmt``) per file. Each entry (``Ntry``) is a line; an entry that books several
transactions (a batch: several ``TxDtls``) is one line per transaction, whose amounts must add
up to the entry's. The entry's ``AcctSvcrRef`` (else ``NtryRef``) is the bank's reference.
"""

from __future__ import annotations

from datetime import date
from functools import cache
from pathlib import Path

from lxml import etree

from core.reconciliation.statement import (
    MAX_BANK_REFERENCE,
    MAX_END_TO_END_ID,
    MAX_REFERENCE,
    AccountKind,
    Statement,
    StatementAccount,
    StatementFormat,
    StatementLine,
    currency,
    decimal_to_minor,
    invalid,
    refuse_bom,
    refuse_repeated_lines,
    text_field,
)

NAMESPACE = "urn:iso:std:iso:20022:tech:xsd:camt.053.001.02"
_NS = {"c": NAMESPACE}
_XSD = Path(__file__).parent / "xsd" / "camt.053.001.02.xsd"


@cache
def schema() -> etree.XMLSchema:
    return etree.XMLSchema(etree.parse(str(_XSD)))


def _parser() -> etree.XMLParser:
    # No entities, no DTD, no network: a statement is data, never a way to read the server's
    # files (XXE) or blow up memory (billion laughs).
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)


def parse(body: bytes) -> Statement:
    refuse_bom(body)
    try:
        root = etree.fromstring(body, parser=_parser())
    except etree.XMLSyntaxError as exc:
        raise invalid(f"line {exc.lineno or 1}", f"not well-formed XML ({exc.msg})") from None
    if root.getroottree().docinfo.doctype:
        raise invalid("line 1", "a DOCTYPE is not allowed in a statement")
    validator = schema()
    if not validator.validate(root):
        error = validator.error_log[0]
        where = f"{_readable(root, error.path)} (line {error.line})"
        raise invalid(where, f"does not match camt.053.001.02: {error.message}")
    statements = root.findall("c:BkToCstmrStmt/c:Stmt", _NS)
    if len(statements) != 1:
        raise invalid("/Document/BkToCstmrStmt", f"{len(statements)} statements; one statement per file")
    stmt = statements[0]
    account, named = _account(stmt)
    account_currency = stmt.findtext("c:Acct/c:Ccy", namespaces=_NS)
    lines: list[StatementLine] = []
    for index, entry in enumerate(stmt.findall("c:Ntry", _NS), 1):
        lines.extend(_entry_lines(entry, f"Stmt/Ntry[{index}] (line {entry.sourceline})", account, account_currency))
    refuse_repeated_lines(lines)
    return Statement(StatementFormat.CAMT053, stmt.findtext("c:Id", namespaces=_NS), lines, (named,))


def _readable(root: etree._Element, path: str | None) -> str:
    """``Document/BkToCstmrStmt/Stmt/Ntry[2]/BookgDt/Dt`` for libxml2's ``/*/*/*[2]/...``."""
    found = root.getroottree().xpath(path) if path else []
    if not found or not isinstance(found[0], etree._Element):
        return path or "/Document"
    steps = []
    for element in (found[0], *found[0].iterancestors()):
        name = etree.QName(element).localname
        parent = element.getparent()
        same = [] if parent is None else [e for e in parent if etree.QName(e).localname == name]
        steps.append(f"{name}[{same.index(element) + 1}]" if len(same) > 1 else name)
    return "/".join(reversed(steps))


def _account(stmt: etree._Element) -> tuple[str, StatementAccount]:
    iban = stmt.find("c:Acct/c:Id/c:IBAN", _NS)
    element = iban if iban is not None else stmt.find("c:Acct/c:Id/c:Othr/c:Id", _NS)
    path = "Stmt/Acct/Id/IBAN" if iban is not None else "Stmt/Acct/Id/Othr/Id"
    where = path if element is None else f"{path} (line {element.sourceline})"
    account = str(text_field(where, "account", None if element is None else element.text, 34, required=True))
    kind = AccountKind.IBAN if iban is not None else AccountKind.NUMBER
    return account, StatementAccount(where, kind, account)


def _entry_lines(entry: etree._Element, where: str, account: str, account_currency: str | None) -> list[StatementLine]:
    amount_element = entry.find("c:Amt", _NS)
    assert amount_element is not None  # the schema requires it
    code = _currency(where + "/Amt", amount_element, account_currency)
    sign = -1 if entry.findtext("c:CdtDbtInd", namespaces=_NS) == "DBIT" else 1
    total = decimal_to_minor(where + "/Amt", amount_element.text or "", code)
    booked = _booking_date(where, entry)
    reference = entry.findtext("c:AcctSvcrRef", namespaces=_NS) or entry.findtext("c:NtryRef", namespaces=_NS)
    bank_reference = str(text_field(where, "AcctSvcrRef (or NtryRef)", reference, MAX_BANK_REFERENCE, required=True))
    details = entry.findall("c:NtryDtls/c:TxDtls", _NS)
    if len(details) <= 1:
        detail = details[0] if details else None
        return [_line(where, account, code, booked, sign * total, bank_reference, detail, sign)]
    lines = []
    for k, detail in enumerate(details, 1):
        at = f"{where}/NtryDtls/TxDtls[{k}]"
        tx_amount = detail.find("c:AmtDtls/c:TxAmt/c:Amt", _NS)
        if tx_amount is None:
            raise invalid(at, "a batch entry's transaction has no AmtDtls/TxAmt/Amt")
        _currency(at, tx_amount, code)
        amount = decimal_to_minor(at + "/AmtDtls/TxAmt/Amt", tx_amount.text or "", code)
        own_ref = detail.findtext("c:Refs/c:AcctSvcrRef", namespaces=_NS) or f"{bank_reference}/{k}"
        ref = str(text_field(at, "Refs/AcctSvcrRef", own_ref, MAX_BANK_REFERENCE, required=True))
        lines.append(_line(at, account, code, booked, sign * amount, ref, detail, sign))
    if sum(abs(line.amount) for line in lines) != total:
        raise invalid(where, "the amounts of its transactions do not add up to the entry's amount")
    return lines


def _currency(where: str, amount: etree._Element, expected: str | None) -> str:
    code = currency(where, amount.get("Ccy", ""))
    if expected is not None and code != expected:
        raise invalid(where, f"currency {code} differs from the statement account's {expected}")
    return code


def _booking_date(where: str, entry: etree._Element) -> date:
    text = entry.findtext("c:BookgDt/c:Dt", namespaces=_NS) or entry.findtext("c:BookgDt/c:DtTm", namespaces=_NS)
    if not text:
        raise invalid(where, "no booking date (BookgDt)")
    try:
        return date.fromisoformat(text[:10])
    except ValueError:
        raise invalid(where + "/BookgDt", f"{text[:32]!r} is not a date") from None


def _line(
    where: str,
    account: str,
    code: str,
    booked: date,
    amount: int,
    bank_reference: str,
    detail: etree._Element | None,
    sign: int,
) -> StatementLine:
    def find(path: str) -> str | None:
        return None if detail is None else detail.findtext(path, namespaces=_NS)

    end_to_end = find("c:Refs/c:EndToEndId")
    if end_to_end == "NOTPROVIDED":  # ISO 20022's placeholder for "none"
        end_to_end = None
    unstructured = [] if detail is None else [u.text or "" for u in detail.findall("c:RmtInf/c:Ustrd", _NS)]
    # Several Ustrd of up to 140 each: what is kept is the first 140 characters (the references
    # the matcher looks for are at the start by custom).
    reference = (" ".join(unstructured) or find("c:RmtInf/c:Strd/c:CdtrRefInf/c:Ref") or "")[:MAX_REFERENCE]
    # The other party: who paid us (credit) or whom we paid (debit).
    party = find("c:RltdPties/c:Dbtr/c:Nm" if sign > 0 else "c:RltdPties/c:Cdtr/c:Nm")
    return StatementLine(
        where=where,
        account=account,
        currency=code,
        booking_date=booked,
        amount=amount,
        bank_reference=bank_reference,
        end_to_end_id=text_field(where, "EndToEndId", end_to_end, MAX_END_TO_END_ID),
        reference=text_field(where, "RmtInf", reference, MAX_REFERENCE),
        counterparty=text_field(where, "counterparty name", party, MAX_REFERENCE),
    )
