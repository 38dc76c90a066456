"""A transfer with the Python client (clients/python): log in, send, wait until final, find it by
its metadata, and read its events from the feed.

    pip install ./clients/python
    BANK_API=http://127.0.0.1:8000/api/v1 BANK_EMAIL=alice@example.com BANK_PASSWORD=... BANK_PIN=1234 \
        python examples/client_transfer.py SOURCE_ACCOUNT_ID DESTINATION_ACCOUNT_ID AMOUNT
"""

from __future__ import annotations

import os
import sys
import uuid

from bank_sdk import BankClient


def main(source: str, destination: str, amount: int) -> int:
    order = f"example-{uuid.uuid4().hex[:8]}"
    with BankClient(os.environ.get("BANK_API", "http://127.0.0.1:8000/api/v1")) as bank:
        bank.login(os.environ["BANK_EMAIL"], os.environ["BANK_PASSWORD"])
        start = bank.events.page(limit=1)["next_cursor"]
        transfer = bank.transfers.create(
            source_account_id=source,
            destination_account_id=destination,
            amount=amount,
            currency=bank.accounts.get(source).currency,
            pin=os.environ["BANK_PIN"],
            metadata={"order_id": order},
        )
        transfer = bank.transfers.wait(transfer.id, timeout=30)
        print(f"transfer {transfer.id}: {transfer.status} {transfer.failure_code or ''}".strip())
        found = [t.id for t in bank.transfers.list(metadata={"order_id": order})]
        print(f"found by metadata order_id={order}: {found == [transfer.id]}")
        for event in bank.events.follow(after=start, idle_timeout=5):
            if event.data.get("id") == transfer.id:
                print(f"event {event.sequence} {event.type} (webhook-id {event.id})")
    return 0 if transfer.status == "COMPLETED" else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
