"""One way to wait for something another process does: poll a condition, never a fixed sleep."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(what: str, check: Callable[[], T], timeout: float = 30, interval: float = 0.1) -> T:
    """Call ``check`` until it returns something truthy, and return that; fail naming ``what``
    (and the last value seen) once ``timeout`` seconds have passed."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not after {timeout} s (last: {value!r})"[:2000])
        time.sleep(interval)
