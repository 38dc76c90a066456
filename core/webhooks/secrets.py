"""Endpoint signing secrets: generated in the Standard Webhooks format, stored Fernet-encrypted.

The encryption key rotates with MultiFernet: WEBHOOK_SECRETS_KEY encrypts, the keys in
WEBHOOK_SECRETS_PREVIOUS_KEYS still decrypt, and ``SecretBox.rotate`` re-encrypts a stored
secret under the current key (``flask --app web rotate-webhook-secrets-key``), after which the
previous keys can be dropped.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Sequence
from datetime import datetime

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from standardwebhooks import Webhook

SECRET_PREFIX = "whsec_"  # noqa: S105 (a format prefix, not a secret)
SECRET_BYTES = 32  # Standard Webhooks: 24 to 64 bytes
_KDF_INFO = b"transfer-processor/webhook-endpoint-secrets/v1"


def generate_secret() -> str:
    """``whsec_`` + base64 of random bytes: shown to the partner once, then only stored encrypted."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def _fernet(master_key: str) -> Fernet:
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_KDF_INFO).derive(master_key.encode())
    return Fernet(base64.urlsafe_b64encode(key))


class SecretBox:
    """Encrypts endpoint secrets under a Fernet key derived (HKDF-SHA256) from WEBHOOK_SECRETS_KEY;
    decrypts under that key or any of ``previous_keys`` (MultiFernet tries them in order)."""

    def __init__(self, master_key: str, previous_keys: Sequence[str] = ()) -> None:
        self._fernet = MultiFernet([_fernet(k) for k in (master_key, *previous_keys)])

    def __repr__(self) -> str:
        return "SecretBox(<keys hidden>)"

    def encrypt(self, secret: str) -> str:
        return self._fernet.encrypt(secret.encode()).decode()

    def decrypt(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except InvalidToken as exc:
            raise ValueError(
                "endpoint secret cannot be decrypted: wrong WEBHOOK_SECRETS_KEY or WEBHOOK_SECRETS_PREVIOUS_KEYS?"
            ) from exc

    def rotate(self, token: str) -> str:
        """The same secret encrypted under the current key (from whichever key decrypts it)."""
        try:
            return self._fernet.rotate(token.encode()).decode()
        except InvalidToken as exc:
            raise ValueError("endpoint secret cannot be decrypted by any configured key") from exc


def sign(secrets_: list[str], msg_id: str, timestamp: datetime, body: str) -> str:
    """The ``webhook-signature`` header: one ``v1,<base64>`` per secret, space-separated."""
    return " ".join(Webhook(s).sign(msg_id, timestamp, body) for s in secrets_)
