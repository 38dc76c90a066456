"""Delivery of one-time codes to users, chosen by the ``NOTIFIER`` setting.

- ``log`` (default): one structured log line per code sent. The code itself is *not* in it:
  logs are shipped and kept, and core.logs redacts such values anyway. Use a real channel
  (SMS, e-mail) behind this interface in production.
- ``file:PATH``: appends one JSON line per code to PATH (mode 0600), for development and
  tests: ``{"user_id", "email", "purpose", "code", "challenge_id", "sent_at"}``.
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import structlog

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class OtpMessage:
    user_id: uuid.UUID
    email: str
    purpose: str
    code: str
    challenge_id: str

    def __repr__(self) -> str:  # never print the code by accident
        return f"OtpMessage(user_id={self.user_id}, purpose={self.purpose}, challenge_id={self.challenge_id})"


class Notifier(Protocol):
    def send_otp(self, message: OtpMessage) -> None: ...


class LogNotifier:
    def send_otp(self, message: OtpMessage) -> None:
        log.info(
            "otp_sent",
            user_id=str(message.user_id),
            purpose=message.purpose,
            challenge_id=message.challenge_id,
            delivery="log (code withheld; use NOTIFIER=file:PATH to read codes in development)",
        )


class FileNotifier:
    def __init__(self, path: Path) -> None:
        self.path = path

    def send_otp(self, message: OtpMessage) -> None:
        line = json.dumps(
            {
                "user_id": str(message.user_id),
                "email": message.email,
                "purpose": message.purpose,
                "code": message.code,
                "challenge_id": message.challenge_id,
                "sent_at": datetime.now(UTC).isoformat(),
            }
        )
        # One O_APPEND write per line: lines from concurrent API processes do not interleave.
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, (line + "\n").encode())
        finally:
            os.close(fd)
        log.info("otp_sent", user_id=str(message.user_id), purpose=message.purpose, challenge_id=message.challenge_id)


def make_notifier(spec: str) -> Notifier:
    """``log`` or ``file:PATH`` (validated by Settings)."""
    if spec.startswith("file:"):
        return FileNotifier(Path(spec[len("file:") :]))
    if spec == "log":
        return LogNotifier()
    raise ValueError(f"unknown NOTIFIER {spec!r}: use 'log' or 'file:PATH'")
