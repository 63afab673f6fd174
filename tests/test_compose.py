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
    assert {"redis", "postgres", "migrate", "router-realtime", "router", "tier-realtime",
            "tier-batch", "beat", "gateway", "flower"} <= set(services)
    for name in ("router-realtime", "router", "tier-realtime", "tier-batch", "beat", "gateway",
                 "flower"):
        env = services[name]["environment"]
        assert env["TIERLINE_BROKER_URL"].startswith("redis://redis")
        assert env["TIERLINE_DATABASE_URL"].startswith("postgresql://")
        assert services[name]["depends_on"]["migrate"]["condition"] == \
            "service_completed_successfully"
    # realtime has a router worker and a tier worker of its own; together, the workers of a
    # role take every lane once
    for role in ("router", "tier"):
        lanes = [_lanes(services[name]["command"]) for name in services
                 if services[name].get("command", [])[:4] == ["tierline", "worker", "--role", role]]
        assert ["realtime"] in lanes, (role, lanes)
        assert sorted(lane for group in lanes for lane in group) == \
            ["batch", "realtime", "standard"], (role, lanes)


def _lanes(command: list[str]) -> list[str]:
    return [command[i + 1] for i, word in enumerate(command) if word == "--lane"]


def test_the_tierline_commands_the_compose_file_runs_exist() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    for service in compose["services"].values():
        command = service.get("command", [])
        if command[:1] == ["tierline"]:
            words = [w for w in command[1:3] if not w.startswith("-")]
            run = subprocess.run([sys.executable, "-m", "tierline", *words, "--help"], cwd=ROOT,
                                 capture_output=True, text=True, timeout=60)
            assert run.returncode == 0, (command, run.stderr)
