"""Which reader a statement body goes to, by its media type (API.md)."""

from __future__ import annotations

from collections.abc import Callable

from core.reconciliation import bai2_format, camt053, csv_format
from core.reconciliation.statement import Statement

READERS: dict[str, Callable[[bytes], Statement]] = {
    "application/xml": camt053.parse,
    "text/xml": camt053.parse,
    "text/plain": bai2_format.parse,
    "text/csv": csv_format.parse,
}


def read(body: bytes, media_type: str) -> Statement:
    """The statement, or ``RECONCILIATION_FILE_INVALID``; ``media_type`` is one of READERS."""
    return READERS[media_type](body)
