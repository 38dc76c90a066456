"""Domain errors carry a code; web/problems.py alone says what each code means over HTTP."""

from __future__ import annotations

import importlib
import pkgutil

import core
from core import errors
from core.errors import DomainError, RateLimited
from web.problems import DOMAIN_STATUSES, domain_problem_body, handle_domain_error


def _all_subclasses(cls: type[DomainError]) -> set[type[DomainError]]:
    found = set(cls.__subclasses__())
    for sub in list(found):
        found |= _all_subclasses(sub)
    return found


def test_every_domain_error_code_has_a_status_and_title() -> None:
    for module in pkgutil.walk_packages(core.__path__, "core."):
        importlib.import_module(module.name)  # subclasses defined outside core.errors count too
    codes = {cls.code for cls in _all_subclasses(DomainError)} | {DomainError.code}
    assert codes - set(DOMAIN_STATUSES) == set()


def test_a_domain_error_without_detail_reads_as_its_title() -> None:
    body = domain_problem_body(errors.NotFound())
    assert body == {
        "type": "about:blank",
        "title": "Not Found",
        "status": 404,
        "code": "NOT_FOUND",
        "detail": "Not Found",
    }


def test_extra_data_and_retry_after_reach_the_response() -> None:
    from flask import Flask

    with Flask(__name__).app_context():
        response = handle_domain_error(RateLimited("slow down", retry_after=7, errors={"pin": ["x"]}))
    assert response.status_code == 429 and response.headers["Retry-After"] == "7"
    assert response.get_json() == {
        "type": "about:blank",
        "title": "Too Many Requests",
        "status": 429,
        "code": "RATE_LIMITED",
        "detail": "slow down",
        "errors": {"pin": ["x"]},
    }
