"""Routing transfers to settlement partitions: one account's debits always meet in one queue.

The partition is a pure function of the source account, so every debit of an account is
settled by one partition drainer in accept order, and partitions spread across worker hosts.
The exception: an atomic batch goes whole to the partition of its first item's source, so one
drainer settles it in one transaction; its other sources' debits may then settle beside their
own partition's (row locks keep that safe, only the order between the two is not accept order).
"""

from __future__ import annotations

import uuid

QUEUE_PREFIX = "transfers"


def partition_of(source_account_id: uuid.UUID, partitions: int) -> int:
    """Stable across processes and hosts (not Python's salted ``hash``)."""
    return source_account_id.int % partitions


def queue_name(partition: int) -> str:
    return f"{QUEUE_PREFIX}.{partition}"


def queue_names(partitions: int) -> tuple[str, ...]:
    return tuple(queue_name(p) for p in range(partitions))
