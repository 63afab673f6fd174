"""docker-compose.yml (no Docker engine here): it parses, and its commands exist."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def test_the_compose_file_describes_the_whole_stack() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"redis", "postgres", "migrate", "router", "tier-realtime", "tier-batch", "beat",
            "gateway", "flower"} <= set(services)
    for name in ("router", "tier-realtime", "tier-batch", "beat", "gateway", "flower"):
        env = services[name]["environment"]
        assert env["TIERLINE_BROKER_URL"].startswith("redis://redis")
        assert env["TIERLINE_DATABASE_URL"].startswith("postgresql://")
        assert services[name]["depends_on"]["migrate"]["condition"] == \
            "service_completed_successfully"
    assert "--lane" in services["tier-realtime"]["command"]


def test_the_tierline_commands_the_compose_file_runs_exist() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    for service in compose["services"].values():
        command = service.get("command", [])
        if command[:1] == ["tierline"]:
            words = [w for w in command[1:3] if not w.startswith("-")]
            run = subprocess.run([sys.executable, "-m", "tierline", *words, "--help"], cwd=ROOT,
                                 capture_output=True, text=True, timeout=60)
            assert run.returncode == 0, (command, run.stderr)
