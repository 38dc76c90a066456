"""A Python client for the bank's transfer API (see README.md)."""

from bank_sdk._http import RetryPolicy
from bank_sdk.client import BankClient
from bank_sdk.errors import BankError, TransportFailed, error_for
from bank_sdk.models import Account, Event, Transfer
from bank_sdk.webhooks import verify_webhook

__all__ = [
    "Account",
    "BankClient",
    "BankError",
    "Event",
    "RetryPolicy",
    "Transfer",
    "TransportFailed",
    "error_for",
    "verify_webhook",
]
