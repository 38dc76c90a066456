"""Only a statement of the bank's own account at its correspondent is reconciled: another
account's statement would have its inbound credits matched, crediting customers with money that
never reached the bank. Checked after the file is read and before anything is written."""

from __future__ import annotations

from dataclasses import dataclass

from core.reconciliation.statement import AccountKind, Statement, invalid


def _normalised(value: str) -> str:
    return "".join(value.split()).upper()


@dataclass(frozen=True)
class OwnAccount:
    """The bank's account at its correspondent: the payout files' debtor (PAYOUT_DEBTOR_IBAN) and
    the same account's number (PAYOUT_DEBTOR_ACCOUNT_NUMBER)."""

    iban: str
    number: str

    def check(self, statement: Statement) -> None:
        """``RECONCILIATION_FILE_INVALID`` naming the first account element or record that is not it.

        An IBAN (camt.053 ``Acct/Id/IBAN``) is compared with the configured IBAN, an account number
        (camt.053 ``Acct/Id/Othr/Id``, BAI2 record 03) with the configured number, both without
        spaces and case (``DE89 3704 ...`` as printed is the same IBAN); nothing else is equated
        (no leading zeros dropped, no number read out of the IBAN's BBAN), since a near match is
        exactly the other account this check keeps out. A CSV names no account: not checked."""
        for named in statement.accounts:
            if named.kind is AccountKind.IBAN:
                expected, setting = self.iban, "PAYOUT_DEBTOR_IBAN"
            else:
                expected, setting = self.number, "PAYOUT_DEBTOR_ACCOUNT_NUMBER"
            if _normalised(named.value) != _normalised(expected):
                raise invalid(
                    named.where,
                    f"the statement is of {named.kind.value} {named.value[:34]!r}, not of the bank's account at "
                    f"its correspondent ({setting})",
                )
