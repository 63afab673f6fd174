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


def _compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def _default_services() -> dict:
    """The services `docker compose up` starts with no profile."""
    return {name: s for name, s in _compose()["services"].items() if not s.get("profiles")}


def test_production_is_the_default_and_the_simulator_is_a_profile() -> None:
    services = _compose()["services"]
    env = services["router"]["environment"]
    assert env["TIERLINE_ENV"] == "${TIERLINE_ENV:-prod}"
    assert env["TIERLINE_POLICY"] == "/etc/tierline/policies/${TIERLINE_ENV:-prod}.yaml"
    for name in ("prod", "dev"):
        assert (ROOT / "policies" / f"{name}.yaml").exists()
    assert services["sim"]["profiles"] == ["sim"]
    for name, service in _default_services().items():
        assert "sim" not in (service.get("depends_on") or {}), name


def test_only_the_gateway_and_flower_are_published_and_on_loopback_by_default() -> None:
    published = {name: s["ports"] for name, s in _default_services().items() if s.get("ports")}
    assert set(published) == {"gateway", "flower"}
    for service in _compose()["services"].values():
        for port in service.get("ports", []):
            address = str(port).rsplit(":", 2)[0]
            assert address in ("${TIERLINE_PUBLISH_ADDR:-127.0.0.1}", "127.0.0.1"), port


def test_flower_needs_its_login_and_lists_every_queue() -> None:
    flower = _compose()["services"]["flower"]
    assert flower["environment"]["FLOWER_BASIC_AUTH"].startswith("${FLOWER_BASIC_AUTH:?")
    assert flower["command"][:3] == ["celery", "-A", "tierline.workers.flower_queues"]
    # every worker sends task events, so Flower's task list shows the named bundles
    for name, service in _compose()["services"].items():
        if "worker" in service.get("command", [])[:4]:
            assert "-E" in service["command"], name


def test_every_service_has_a_healthcheck() -> None:
    for name, service in _compose()["services"].items():
        assert service.get("healthcheck", {}).get("test"), name


def _mounts(service: dict) -> dict[str, str]:
    """Container path -> source, for a service's short-syntax volumes."""
    import re

    out = {}
    for volume in service.get("volumes", []):
        source, target = re.sub(r"\$\{[^}]*\}", "VAR", volume).split(":")[:2]
        out[target] = source
    return out


def test_jobs_and_reports_live_on_volumes() -> None:
    services = _compose()["services"]
    for name in ("beat", "scheduled"):
        assert services[name]["environment"]["TIERLINE_JOBS_DIR"] in _mounts(services[name])
    reports = services["scheduled"]["environment"]["TIERLINE_REPORT_DIR"]
    assert _mounts(services["scheduled"])[reports] in _compose()["volumes"]


def test_the_image_is_a_plain_install_run_by_an_unprivileged_user() -> None:
    lines = [line.strip() for line in (ROOT / "Dockerfile").read_text().splitlines()]
    instructions = [line for line in lines if line and not line.startswith("#")]
    assert not any("pip install" in line and " -e " in f"{line} " for line in instructions)
    assert any(line.startswith("RUN pip install") and ".whl" in line for line in instructions)
    users = [line.split()[1] for line in instructions if line.startswith("USER ")]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert "COPY . " not in "\n".join(instructions)  # only what the install needs
    ignored = (ROOT / ".dockerignore").read_text().split()
    for pattern in (".git", ".venv", "*.sqlite", "**/__pycache__", "tests", ".env"):
        assert pattern in ignored, pattern


def test_prometheus_scrapes_every_worker_and_the_dashboard_uses_real_metrics() -> None:
    import json
    import re

    services = _compose()["services"]
    config = yaml.safe_load((ROOT / "monitoring" / "prometheus.yml").read_text())
    targets = {t for job in config["scrape_configs"] for group in job["static_configs"]
               for t in group["targets"]}
    port = services["router"]["environment"]["TIERLINE_METRICS_PORT"]
    workers = {name for name, s in services.items() if "worker" in s.get("command", [])[:4]}
    assert {f"{name}:{port}" for name in workers} <= targets
    assert {t.split(":")[0] for t in targets} <= set(services)

    from prometheus_client import REGISTRY

    import tierline.metrics  # noqa: F401  (registers the counters)

    names = {family.name for family in REGISTRY.collect()}
    names |= {"tierline_queue_depth", "tierline_absorber_tokens_today",
              "tierline_absorber_tokens_per_day", "tierline_breaker_open",
              "tierline_breaker_failures"}  # read from Redis by ClusterCollector
    dashboard = json.loads((ROOT / "monitoring/grafana/dashboards/tierline.json").read_text())
    used = {m for panel in dashboard["panels"] for target in panel["targets"]
            for m in re.findall(r"tierline_\w+", target["expr"])}
    def base(name: str) -> str:
        return re.sub(r"_(bucket|count|sum|total|created)$", "", name)

    assert used and {base(m) for m in used} <= {base(n) for n in names}, used
