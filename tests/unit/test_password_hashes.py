"""A stored password hash that cannot be read is refused like a wrong password (the caller
learns nothing), but logged as an error and counted: it is a fault of ours, not a bad login."""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY
from structlog.testing import capture_logs

from core.identity.passwords import hash_password, verify_password

UNREADABLE = "bank_password_hash_unreadable_total"


def _unreadable_count() -> float:
    return REGISTRY.get_sample_value(UNREADABLE) or 0.0


def test_a_wrong_password_is_refused_quietly() -> None:
    stored = hash_password("correct horse battery")
    before = _unreadable_count()
    with capture_logs() as logs:
        assert verify_password(stored, "correct horse battery")
        assert not verify_password(stored, "wrong")
        assert not verify_password(None, "anything")  # unknown email: the dummy hash
    assert logs == [] and _unreadable_count() == before


@pytest.mark.parametrize(
    "corrupt",
    [
        hash_password("correct horse battery").rpartition("$")[0],  # truncated: its digest is gone
        hash_password("correct horse battery").replace("$argon2id$", "$argon2xx$"),  # unknown variant
        "$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW",  # another scheme (bcrypt)
        "not a hash at all",
    ],
    ids=["truncated", "unknown-variant", "bcrypt", "garbage"],
)
def test_an_unreadable_hash_is_refused_logged_and_counted(corrupt: str) -> None:
    before = _unreadable_count()
    with capture_logs() as logs:
        assert not verify_password(corrupt, "correct horse battery")
    assert _unreadable_count() == before + 1
    assert [(e["event"], e["log_level"]) for e in logs] == [("password_hash_unreadable", "error")]
    assert corrupt not in repr(logs)  # the stored hash is never logged
