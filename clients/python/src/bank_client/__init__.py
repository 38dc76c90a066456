"""A Python client for the bank's transfer API (see README.md)."""

from bank_client._http import RetryPolicy
from bank_client.client import BankClient
from bank_client.errors import BankError, TransportFailed, error_for
from bank_client.models import Account, Event, Transfer
from bank_client.webhooks import verify_webhook

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
