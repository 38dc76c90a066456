"""docker-compose's `ha` profile: the formation's three services exist only under it, and the app
services take the formation's multi-host URL from DATABASE_URL, which the settings accept."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from core.config import Settings

ROOT = Path(__file__).resolve().parents[2]
HA_URL = "postgresql://bank@pgaf-node1:5432,pgaf-node2:5432/bank?target_session_attrs=read-write"


def _config(*args: str, database_url: str | None = None) -> dict:  # type: ignore[type-arg]
    if shutil.which("docker-compose") is None:
        pytest.skip("docker-compose is not installed")
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMPOSE_") and k != "DATABASE_URL"}
    if database_url:
        env["DATABASE_URL"] = database_url
    done = subprocess.run(
        ["docker-compose", "-f", str(ROOT / "docker-compose.yml"), *args, "config"],
        capture_output=True, text=True, env=env, timeout=60, check=True,
    )  # fmt: skip
    config: dict = yaml.safe_load(done.stdout)  # type: ignore[type-arg]
    return config


def test_the_formation_runs_only_under_the_ha_profile() -> None:
    services = _config("--profile", "ha")["services"]
    formation = {"pgaf-monitor", "pgaf-node1", "pgaf-node2"}
    assert formation <= set(services)
    assert {name for name, service in services.items() if "ha" in service.get("profiles", [])} == formation


def test_the_app_services_take_the_formations_multi_host_url() -> None:
    services = _config("--profile", "ha", database_url=HA_URL)["services"]
    for name in ("web", "worker", "migrate"):
        assert services[name]["environment"]["DATABASE_URL"] == HA_URL
    assert "host=pgaf-node1%3A5432&host=pgaf-node2%3A5432" in Settings(database_url=HA_URL).sqlalchemy_url
