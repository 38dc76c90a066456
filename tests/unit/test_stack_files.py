"""The container stack files: docker-compose.yml, Grafana dashboards and the ops/ files they mount.

The compose file is validated by the compose client itself (``docker-compose`` or the
``docker compose`` plugin), which needs no Docker engine for ``config``; where neither is
installed those tests skip. Everything else uses only the standard library.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DASHBOARDS = ROOT / "ops" / "grafana" / "dashboards"

SERVICES = {"postgres", "redis", "migrate", "web", "worker", "beat", "prometheus", "grafana", "jaeger"}
TIMEOUT = 60


@cache
def compose_command() -> tuple[str, ...] | None:
    """The compose client on this machine: Debian's ``docker-compose``, else ``docker compose``."""
    if shutil.which("docker-compose"):
        return ("docker-compose",)
    if shutil.which("docker"):
        probe = subprocess.run(
            ["docker", "compose", "version"], capture_output=True, text=True, timeout=TIMEOUT, check=False
        )
        if probe.returncode == 0:
            return ("docker", "compose")
    return None


def run_compose(*args: str) -> subprocess.CompletedProcess[str]:
    cmd = compose_command()
    if cmd is None:
        pytest.skip("no compose client: neither `docker-compose` nor `docker compose` is installed")
    # Only the compose file decides the project: no COMPOSE_* overrides from the caller.
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMPOSE_")}
    return subprocess.run(
        [*cmd, "-f", str(COMPOSE_FILE), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


def test_compose_file_is_valid() -> None:
    result = run_compose("config", "-q")
    assert result.returncode == 0, f"compose config failed:\n{result.stdout}\n{result.stderr}"


def test_compose_defines_every_service() -> None:
    result = run_compose("config", "--services")
    assert result.returncode == 0, f"compose config --services failed:\n{result.stderr}"
    services = {line.strip() for line in result.stdout.splitlines() if line.strip()}
    assert services >= SERVICES, f"missing services: {sorted(SERVICES - services)}"


def test_compose_bind_mounts_exist() -> None:
    """Every ./ops/... file or folder that docker-compose.yml mounts is in the repo."""
    sources = re.findall(r"^\s*-\s*\"?(\./[^:\s\"]+):", COMPOSE_FILE.read_text(), flags=re.MULTILINE)
    assert sources, "docker-compose.yml mounts nothing from the repo"
    missing = [s for s in sources if not (ROOT / s).exists()]
    assert not missing, f"mounted but not in the repo: {missing}"


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Every panel, including those nested in collapsed rows; rows themselves query nothing."""
    for panel in panels:
        if panel.get("type") == "row":
            yield from _panels(panel.get("panels", []))
        else:
            yield panel


def _dashboard_files() -> list[Path]:
    return sorted(DASHBOARDS.rglob("*.json"))


def test_there_are_dashboards() -> None:
    assert _dashboard_files(), f"no dashboard JSON under {DASHBOARDS}"


@pytest.mark.parametrize("path", _dashboard_files(), ids=lambda p: p.name)
def test_dashboard_panels_have_queries(path: Path) -> None:
    dashboard = json.loads(path.read_text())
    assert dashboard.get("uid"), f"{path.name}: dashboard has no uid"
    panels = list(_panels(dashboard.get("panels", [])))
    assert panels, f"{path.name}: dashboard has no panels"
    for panel in panels:
        title = panel.get("title", panel.get("id"))
        targets = panel.get("targets")
        assert targets, f"{path.name}: panel {title!r} has no targets"
        for target in targets:
            expr = target.get("expr")
            assert isinstance(expr, str), f"{path.name}: panel {title!r} has a target without expr"
            assert expr.strip(), f"{path.name}: panel {title!r} has an empty expr"


def test_dashboard_uids_are_unique() -> None:
    uids = [json.loads(p.read_text()).get("uid") for p in _dashboard_files()]
    assert len(uids) == len(set(uids)), f"duplicate dashboard uids: {uids}"
