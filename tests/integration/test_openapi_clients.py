"""Clients generated from /api/v1/openapi.json build and type-check a partner's flow (issue 29).

- Python: openapi-python-client (requirements-dev.txt) generates the client; tests/clients/python/
  typed_flow.py passes ``mypy --strict`` against it with no cast and no ``type: ignore``, then runs
  against the API (register -> KYC -> deposit -> transfer -> poll -> replay -> statement -> hold ->
  capture -> refund -> error).
- TypeScript: openapi-typescript (tests/clients/ts/package.json, pinned in package-lock.json, installed
  with ``npm ci``) turns the document into types; tests/clients/ts/flow.ts compiles with ``tsc --strict``.
- Redocly CLI's ``lint`` with its recommended rules reports no error.

The flows use some operations, not the list of all: new endpoints do not break them.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.settling import settle_transfer
from web.openapi_snapshot import document, render

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
PY_CLIENT = ROOT / "tests" / "clients" / "python"
TS_CLIENT = ROOT / "tests" / "clients" / "ts"
GENERATOR = Path(sys.executable).with_name("openapi-python-client")
# Caches that outlive a clone (CI runs from a fresh one on this machine): mypy's cache of what the
# generated client imports (typeshed, httpx, attrs), tsc's build info and npm's download cache. A miss
# only costs time.
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "bank-tests"


@pytest.fixture(scope="module")
def spec_file(settings: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.conftest import close_app
    from web import create_app

    app = create_app(settings)  # the test's app is per test; the document is the same for all
    try:
        text = render(document(app))
    finally:
        close_app(app)
    path = tmp_path_factory.mktemp("openapi") / "openapi.json"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def python_client(spec_file: Path) -> Path:
    """A directory holding the generated ``bank_client`` package and the flow beside it."""
    out = spec_file.parent / "python"
    out.mkdir()
    generated = subprocess.run(
        [
            str(GENERATOR),
            "generate",
            "--path",
            str(spec_file),
            "--meta",
            "none",
            "--output-path",
            str(out / "bank_client"),
            "--config",
            str(PY_CLIENT / "openapi-python-client.yaml"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert generated.returncode == 0, generated.stdout + generated.stderr
    # A warning means part of the document was skipped: the client would be missing it.
    assert "Warning" not in generated.stdout + generated.stderr, generated.stdout + generated.stderr
    shutil.copy(PY_CLIENT / "typed_flow.py", out / "typed_flow.py")
    return out


def test_the_python_flow_type_checks_strictly_without_casts(python_client: Path) -> None:
    source = (python_client / "typed_flow.py").read_text(encoding="utf-8")
    for escape in (r"\bcast\(", r"#\s*type:\s*ignore", r"\bAny\b"):
        assert not re.search(escape, source), f"typed_flow.py uses {escape!r}: the document should type it"
    checked = subprocess.run(
        # Incremental, with a cache outside the clone: the generated package's modules are new files
        # each run (checked afresh when their text changed), the stdlib and httpx stubs are not.
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--cache-dir",
            str(CACHE / "mypy-generated-client"),
            "--config-file",
            "/dev/null",
            "typed_flow.py",
        ],
        cwd=python_client,
        env={"MYPYPATH": str(python_client), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "Success: no issues found" in checked.stdout, checked.stdout


@pytest.fixture
def flow_module(python_client: Path) -> Iterator[Any]:
    sys.path.insert(0, str(python_client))
    try:
        yield importlib.import_module("typed_flow")
    finally:
        sys.path.remove(str(python_client))
        for name in [n for n in sys.modules if n == "typed_flow" or n.split(".")[0] == "bank_client"]:
            del sys.modules[name]


@pytest.mark.commits  # the statement reads committed history in its own snapshot
def test_the_python_flow_runs_against_the_api(app: Any, flow_module: Any, sessions: Any, admin_user: Any) -> None:
    from bank_client import AuthenticatedClient, Client

    from web.security import issue_tokens

    transport = httpx.WSGITransport(app=app)
    base = "http://bank.test"

    def authenticated(token: str) -> AuthenticatedClient:
        return AuthenticatedClient(base_url=base, token=token, httpx_args={"transport": transport})

    def settle(transfer_id: uuid.UUID) -> None:
        with sessions.begin() as session:
            settle_transfer(session, transfer_id)

    with app.test_request_context():
        admin_token = str(issue_tokens(admin_user)["access_token"])
    bank = flow_module.Bank(
        public=Client(base_url=base, httpx_args={"transport": transport}),
        authenticated=authenticated,
        admin_token=admin_token,
        settle=settle,
    )
    flow_module.run(bank, uuid.uuid4().hex[:12])


@pytest.fixture(scope="module")
def npm_tools() -> Path:
    if shutil.which("npm") is None or shutil.which("node") is None:
        pytest.skip("npm/node are not installed: the TypeScript and Redocly checks need them (.ci/run installs them)")
    installed = subprocess.run(
        # --prefer-offline: packages already in npm's cache (~/.npm) are not asked of the registry again.
        ["npm", "ci", "--prefer-offline", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=TS_CLIENT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert installed.returncode == 0, installed.stdout + installed.stderr
    return TS_CLIENT / "node_modules" / ".bin"


def test_the_typescript_flow_compiles_strictly(spec_file: Path, npm_tools: Path) -> None:
    code = [line for line in (TS_CLIENT / "flow.ts").read_text().splitlines() if not line.lstrip().startswith("//")]
    for escape in (r"\bany\b", r"\bas\b", r"@ts-", r"!\."):
        assert not any(re.search(escape, line) for line in code), f"flow.ts uses {escape}: the document should type it"
    generated = TS_CLIENT / "generated"
    generated.mkdir(exist_ok=True)
    types = subprocess.run(
        # Not --default-non-nullable: a request field with a default is optional to send.
        [
            str(npm_tools / "openapi-typescript"),
            str(spec_file),
            "--default-non-nullable",
            "false",
            "-o",
            str(generated / "schema.d.ts"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert types.returncode == 0, types.stdout + types.stderr
    compiled = subprocess.run(
        # Incremental, its build info outside the clone (one file per checkout path): tsc --strict
        # checks the DOM and ES libraries too (skipLibCheck false), which do not change between runs;
        # a changed file is checked again and the errors of the last run are reported again.
        [
            str(npm_tools / "tsc"),
            "--project",
            str(TS_CLIENT / "tsconfig.json"),
            "--incremental",
            "--tsBuildInfoFile",
            str(CACHE / "tsc" / f"flow-{hashlib.sha256(str(TS_CLIENT).encode()).hexdigest()[:16]}.tsbuildinfo"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert compiled.returncode == 0, compiled.stdout + compiled.stderr


def test_redocly_lint_finds_no_error(spec_file: Path, npm_tools: Path) -> None:
    linted = subprocess.run(
        [str(npm_tools / "redocly"), "lint", str(spec_file), "--extends", "recommended", "--format", "json"],
        cwd=TS_CLIENT,
        capture_output=True,
        text=True,
        timeout=300,
        env={"PATH": "/usr/bin:/bin", "REDOCLY_TELEMETRY": "off", "REDOCLY_SUPPRESS_UPDATE_NOTICE": "true"},
    )
    report = json.loads(linted.stdout)
    errors = [p for p in report.get("problems", []) if p.get("severity") == "error"]
    assert errors == [], json.dumps(errors, indent=1)[:8000]
    assert linted.returncode == 0, linted.stderr
