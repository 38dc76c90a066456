"""The intended architecture, checked on every file's imports (parsed with ast, nothing imported).

- core/ is the bank and framework-free: a view, a task, a CLI and a test all drive the same code,
  so it imports no web framework, task queue, schema library or HTTP client, nor an entry point.
- The worker is an entry point beside web/, never built on it.
- Transfers write domain events (core.events); webhooks subscribe to them. Transfers never
  import webhooks.
- core/errors.py says what went wrong (a stable code), never how HTTP shows it.
- No import cycle among the modules of core/, web/ and worker/, counting every import a
  module makes (function-level and TYPE_CHECKING ones too): a cycle hidden by a local import
  is still a cycle (e.g. core.config building policies whose modules import core.db, which
  imports core.config).

Each rule is also run against a small tree that breaks it, so a rule that can no longer fail
(a typo in a package name, a missed import form) fails here.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

FRAMEWORKS = (
    "flask",  # and every flask_* extension, see _matches
    "werkzeug",
    "webargs",
    "marshmallow",
    "celery",
    "kombu",
    "httpx",
    "requests",
    "urllib3",
    "gunicorn",
)
ENTRY_POINTS = ("web", "worker")


@dataclass(frozen=True)
class Rule:
    name: str
    package: str  # a folder under the root, e.g. "core/transfers"
    forbidden: tuple[str, ...]  # module names; a name also forbids its submodules

    def violations(self, root: Path) -> list[str]:
        found = []
        for path in sorted((root / self.package).rglob("*.py")):
            for line, module in imported_modules(path, root):
                if any(_matches(module, f) for f in self.forbidden):
                    found.append(f"{path.relative_to(root)}:{line}: {module}")
        return found


RULES = [
    Rule("core imports no framework, HTTP client or entry point", "core", FRAMEWORKS + ENTRY_POINTS),
    Rule("the worker never imports web", "worker", ("web",)),
    Rule("transfers never import webhooks (they write core.events)", "core/transfers", ("core.webhooks",)),
]


def _matches(module: str, forbidden: str) -> bool:
    if forbidden == "flask" and module.split(".")[0].startswith("flask_"):
        return True
    return module == forbidden or module.startswith(forbidden + ".")


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, root: Path) -> Iterator[tuple[int, str]]:
    """Every module a file imports, absolute: ``from core import webhooks`` yields both ``core``
    and ``core.webhooks`` (a name may be a module), relative imports are resolved."""
    module = _module_name(path, root)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            yield node.lineno, base
            for alias in node.names:
                yield node.lineno, f"{base}.{alias.name}"


HTTP_NAMES = frozenset({"status", "status_code", "http_status", "title"})


def http_in_errors(path: Path) -> list[str]:
    """What in core/errors.py would tie a domain error to HTTP: a status or title attribute, a
    number in the HTTP status range, an import of ``http``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store) and node.id in HTTP_NAMES:
            found.append(f"{node.lineno}: assigns {node.id}")
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store) and node.attr in HTTP_NAMES:
            found.append(f"{node.lineno}: assigns .{node.attr}")
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.target.id in HTTP_NAMES:
            found.append(f"{node.lineno}: declares {node.target.id}")
        elif isinstance(node, ast.Constant) and type(node.value) is int and 100 <= node.value <= 599:
            found.append(f"{node.lineno}: HTTP-like number {node.value}")
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            found += [f"{node.lineno}: imports {n}" for n in names if n.split(".")[0] in ("http", *FRAMEWORKS)]
    return found


PACKAGES = ("core", "web", "worker")


def import_cycles(root: Path) -> list[list[str]]:
    """The import cycles among the modules of PACKAGES: each strongly connected component of the
    import graph with more than one module (Tarjan), its modules sorted."""
    paths = [p for package in PACKAGES if (root / package).is_dir() for p in sorted((root / package).rglob("*.py"))]
    modules = {_module_name(p, root): p for p in paths}
    graph = {m: sorted(_imported(p, root, modules) - {m}) for m, p in modules.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for target in graph[module]:
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            component = []
            while not component or component[-1] != module:
                component.append(stack.pop())
            if len(component) > 1:
                cycles.append(sorted(component))

    for module in graph:
        if module not in index:
            visit(module)
    return sorted(cycles)


def _imported(path: Path, root: Path, modules: dict[str, Path]) -> set[str]:
    """The modules of ``modules`` that ``path`` imports. ``from pkg import sub`` names only the
    submodule when every name it takes is one: the package is already being imported then (a
    submodule's import never runs its package's ``__init__`` again), so that is no cycle."""
    by_line: dict[int, list[str]] = {}
    for line, name in imported_modules(path, root):
        by_line.setdefault(line, []).append(name)
    found: set[str] = set()
    for names in by_line.values():
        base, taken = names[0], names[1:]
        if taken and all(name in modules for name in taken) and all(n.startswith(base + ".") for n in taken):
            names = taken
        found.update(name for name in names if name in modules)
    return found


# ---- the real tree --------------------------------------------------------------------------


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.name)
def test_rule_holds(rule: Rule) -> None:
    assert (ROOT / rule.package).is_dir()
    assert rule.violations(ROOT) == []


def test_domain_errors_carry_no_http() -> None:
    assert http_in_errors(ROOT / "core" / "errors.py") == []


def test_no_import_cycle() -> None:
    assert import_cycles(ROOT) == []


# ---- each rule can fail ---------------------------------------------------------------------


@pytest.fixture
def broken(tmp_path: Path) -> Path:
    """A tree that breaks every rule once, in the import forms the real code could use."""
    files = {
        "core/__init__.py": "",
        "core/money.py": "import httpx\n",
        "core/views.py": "from flask_smorest import Blueprint\n",
        "core/webhooks/__init__.py": "",
        "core/transfers/__init__.py": "",
        "core/transfers/submit.py": "from core import webhooks\n",
        "core/transfers/settle.py": "from ..webhooks import relay\n",
        "worker/__init__.py": "",
        "worker/settlement.py": "def f():\n    from web.problems import problem\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    return tmp_path


def test_each_rule_finds_what_breaks_it(broken: Path) -> None:
    core, worker, transfers = RULES
    assert core.violations(broken) == [
        "core/money.py:1: httpx",
        "core/views.py:1: flask_smorest",
        "core/views.py:1: flask_smorest.Blueprint",
    ]
    assert worker.violations(broken) == [
        "worker/settlement.py:2: web.problems",
        "worker/settlement.py:2: web.problems.problem",
    ]
    assert transfers.violations(broken) == [
        "core/transfers/settle.py:1: core.webhooks",
        "core/transfers/settle.py:1: core.webhooks.relay",
        "core/transfers/submit.py:1: core.webhooks",
    ]


def test_an_http_status_in_errors_is_found(tmp_path: Path) -> None:
    errors = tmp_path / "errors.py"
    errors.write_text(
        "from http import HTTPStatus\n"
        "class NotFound(Exception):\n"
        '    code, status, title = "NOT_FOUND", 404, "Not Found"\n'
        "    def __init__(self) -> None:\n"
        "        self.status_code = 404\n"
    )
    assert http_in_errors(errors) == [
        "1: imports http",
        "3: assigns status",
        "3: assigns title",
        "3: HTTP-like number 404",
        "5: assigns .status_code",
        "5: HTTP-like number 404",
    ]


def test_an_import_cycle_is_found_even_behind_local_and_type_checking_imports(tmp_path: Path) -> None:
    files = {
        "core/__init__.py": "",
        "core/config.py": "def pins():\n    from core.identity.pins import PinPolicy\n",
        "core/identity/__init__.py": "",
        "core/identity/pins.py": "from core.db import ROW_LOCK\n",
        "core/db.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from core import config\n",
        "core/money.py": "from core.db import ROW_LOCK\n",  # imports into the cycle, not part of it
        "web/__init__.py": "from . import views\nfrom web import spec\n",
        "web/views.py": "from web import __name__ as package\n",  # a name of the package: its __init__
        "web/spec.py": "from web import limits\n",  # a submodule: no cycle through web/__init__.py
        "web/limits.py": "",
        "worker/__init__.py": "",
        "worker/tasks.py": "import core.money\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert import_cycles(tmp_path) == [
        ["core.config", "core.db", "core.identity.pins"],
        ["web", "web.views"],
    ]
