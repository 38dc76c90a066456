"""What the observability stack queries: every Grafana panel expr and every Prometheus rule expr.

``metric_names_queried()`` is the contract between ops/ and the code: each name it returns
must be exported by the API (``web:8000/metrics``) or the Celery worker
(``worker:9808/metrics``). The unit tests check the files; an end-to-end test scrapes the
running processes and checks every name is there.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
DASHBOARDS = ROOT / "ops" / "grafana" / "dashboards"
ALERTS_FILE = ROOT / "ops" / "prometheus" / "alerts.yml"

# The bank's own metrics (core/observability/metrics.py) and prometheus-flask-exporter's.
METRIC_NAME = re.compile(r"\b(bank_[a-z0-9_]+|flask_[a-z0-9_]+)\b")
# A histogram is exported as <name>_bucket/_sum/_count; "_total" is part of a counter's name.
HISTOGRAM_SUFFIX = re.compile(r"_(bucket|sum|count)$")


def dashboard_files() -> list[Path]:
    return sorted(DASHBOARDS.rglob("*.json"))


def iter_panels(panels: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Every panel, including those nested in collapsed rows; rows themselves query nothing."""
    for panel in panels:
        if panel.get("type") == "row":
            yield from iter_panels(panel.get("panels", []))
        else:
            yield panel


def dashboard_exprs(path: Path) -> list[str]:
    dashboard = json.loads(path.read_text())
    return [
        target["expr"]
        for panel in iter_panels(dashboard.get("panels", []))
        for target in panel.get("targets", [])
        if isinstance(target.get("expr"), str)
    ]


def rules(path: Path = ALERTS_FILE) -> list[dict[str, Any]]:
    """Every rule (alerting or recording) of every group in a Prometheus rules file."""
    document = yaml.safe_load(path.read_text()) or {}
    return [rule for group in document.get("groups") or [] for rule in group.get("rules") or []]


def alert_exprs(path: Path = ALERTS_FILE) -> list[str]:
    return [str(rule["expr"]) for rule in rules(path) if "expr" in rule]


def metric_names(expr: str) -> set[str]:
    """Metric base names in one PromQL expression: ``x_bucket``/``x_sum``/``x_count`` become ``x``."""
    return {HISTOGRAM_SUFFIX.sub("", name) for name in METRIC_NAME.findall(expr)}


def all_exprs() -> list[str]:
    return [expr for path in dashboard_files() for expr in dashboard_exprs(path)] + alert_exprs()


def metric_names_queried() -> set[str]:
    """Base names of the bank_*/flask_* metrics queried by any dashboard panel or alert rule."""
    return {name for expr in all_exprs() for name in metric_names(expr)}
