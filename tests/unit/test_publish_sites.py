"""Every message is published through publish_after_commit: no view or task calls an enqueue
function itself, so none can run before (or without) the commit of the rows it names."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ENQUEUE = {"nudge_after_accept", "enqueue_settlement", "enqueue_delivery"}
# Direct calls that publish for no transaction of their own: the nudge's coalescing wrapper,
# and a drainer handing its partition on after its batches have committed.
ALLOWED = {("worker/settlement.py", "nudge_after_accept"), ("worker/settlement.py", "settle_partition")}


def _called(node: ast.Call) -> str | None:
    if isinstance(node.func, ast.Name):
        return node.func.id
    if isinstance(node.func, ast.Attribute):
        return node.func.attr
    return None


def _calls(path: Path) -> list[tuple[str, str]]:
    """(enclosing function, called name) for every enqueue or Celery publish call in ``path``."""
    found = []
    for fn in ast.walk(ast.parse(path.read_text())):
        if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for node in ast.walk(fn):
            name = _called(node) if isinstance(node, ast.Call) else None
            if name in ENQUEUE or name in {"delay", "apply_async", "send_task"}:
                found.append((fn.name, name))
    return found


def test_enqueues_go_through_publish_after_commit() -> None:
    offenders = []
    for package in ("web", "worker"):
        for path in (ROOT / package).rglob("*.py"):
            rel = path.relative_to(ROOT).as_posix()
            for function, name in _calls(path):
                if rel == "worker/publish.py" and name == "apply_async":
                    continue  # the one place a message is sent
                if (rel, function) not in ALLOWED:
                    offenders.append(f"{rel}:{function} calls {name}")
    assert offenders == []
