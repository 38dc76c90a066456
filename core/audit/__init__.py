"""The audit trail and its tamper evidence.

* ``trail``: writing and listing audit rows (``from core import audit; audit.record(...)``);
* ``seal``: the sealer that chains committed rows in batches, off the writers' path;
* ``leaf``: what a sealed row's hashes cover (the record a client reads, and what it does not);
* ``merkle``: the Merkle tree of a batch, its inclusion proofs and the root chain;
* ``proofs``: a transfer's rows with their proofs, checkable by a client;
* ``roots``: the chained batch roots a client walks to the newest;
* ``verify``: the server-side check of the whole chain (``flask --app web verify-audit``).
"""

from core.audit.trail import entry, record, record_many, search

__all__ = ["entry", "record", "record_many", "search"]
