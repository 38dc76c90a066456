"""Hypothesis profiles: how many examples the property tests run.

``HYPOTHESIS_PROFILE`` (or pytest's ``--hypothesis-profile``) picks one:

- ``quick``, the default (``./run.sh test``, CI): each property test runs a quarter of the examples
  written in it (never fewer than ``FLOOR``), its explicit ``@example`` cases always. The example
  database (``.hypothesis/``) still replays every failure found before, so a run keeps what earlier
  runs learned.
- ``deep``: the counts written in the tests, as the suite ran them before the quick profile
  (``HYPOTHESIS_PROFILE=deep ./run.sh test tests/integration``); run it before a release and after
  changing a money rule.

A test's ``@settings(max_examples=...)`` overrides any profile, so tests write their counts as
``examples(n)``: n under ``deep``, scaled under ``quick``. Any other profile (Hypothesis's own
``default`` or ``ci``) runs the written counts.
"""

from __future__ import annotations

import math
import os

from hypothesis import settings

SCALES = {"quick": 0.25, "deep": 1.0}
FLOOR = 5  # examples: below this a property test hardly explores at all


def load() -> None:
    """Register the profiles on Hypothesis's current one (``ci`` when Hypothesis detects CI) and load
    the chosen one; the rest of each profile (deadline, database, derandomize) stays Hypothesis's."""
    base = settings()
    for name in SCALES:
        settings.register_profile(name, base)
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "quick"))


def examples(deep: int) -> int:
    """The example count for a test written to run ``deep`` examples, under the current profile."""
    scale = SCALES.get(settings.get_current_profile_name(), 1.0)
    return max(min(deep, FLOOR), math.ceil(deep * scale))
