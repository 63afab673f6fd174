"""One Settings object, read from the environment once: every variable in one place, the
command line's --policy passed in it, and child processes given an environment built from it."""

from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.conftest import ROOT
from tierline.config.settings import load_settings, settings_in_force, use_settings
from tierline.router.errors import InvalidInput

# The only readers of the process environment: load_settings, and prometheus_client's own
# variable (read by that library at import: docs/metrics.md).
READERS = {"tierline/config/settings.py", "tierline/metrics.py"}


def test_every_variable_is_read_into_one_object() -> None:
    settings = load_settings({
        "TIERLINE_BROKER_URL": "redis://h:6379/1", "TIERLINE_DATABASE_URL": "postgresql://db/t",
        "TIERLINE_POLICY": "/p.yaml", "TIERLINE_BROKER_KEYPREFIX": "run7:",
        "TIERLINE_VISIBILITY_TIMEOUT_S": "8", "TIERLINE_HOME": "/data",
        "TIERLINE_DATA": "/shared", "TIERLINE_METRICS_PORT": "9200",
        "TIERLINE_METRICS_HOST": "127.0.0.1", "TIERLINE_JOBS_DIR": "/jobs",
        "TIERLINE_REPORT_DIR": "/reports", "TIERLINE_REPORT_SCHEDULE": "0 6 * * *",
        "TIERLINE_RETRAIN_SCHEDULE": "off", "TIERLINE_BUNDLE_DIR": "/bundles",
        "TIERLINE_GATEWAY_KEYS": "/keys.yaml", "OPENAI_API_KEY": "sk-1"})
    assert (settings.broker_url, settings.database_url, settings.policy_path) == (
        "redis://h:6379/1", "postgresql://db/t", Path("/p.yaml"))
    assert settings.redis_url == "redis://h:6379/1"  # the absorber beside a Redis broker
    assert (settings.broker_keyprefix, settings.lease.visibility_s, settings.home) == (
        "run7:", 8.0, Path("/data"))
    assert (settings.data_path, settings.metrics_port, settings.metrics_host) == (
        Path("/shared"), "9200", "127.0.0.1")
    assert (settings.jobs_dir, settings.report_dir, settings.bundle_dir) == (
        Path("/jobs"), Path("/reports"), Path("/bundles"))
    assert (settings.report_schedule, settings.retrain_schedule, settings.gateway_keys) == (
        "0 6 * * *", "off", Path("/keys.yaml"))
    assert settings.env["OPENAI_API_KEY"] == "sk-1"  # for the variables the policy names


def test_with_nothing_set_it_is_the_embedded_default_in_the_data_directory() -> None:
    settings = load_settings({"HOME": "/home/u"})
    assert settings.embedded and settings.redis_url is None
    assert settings.database_url == "sqlite:////home/u/.local/share/tierline/tierline.sqlite"
    assert settings.policy_path.name == "dev.yaml" and settings.lease.visibility_s == 60.0
    assert settings.jobs_dir is None and settings.report_schedule is None


@pytest.mark.parametrize("value", ["soon", "0", "-5"])
def test_a_bad_visibility_timeout_is_named(value: str) -> None:
    with pytest.raises(InvalidInput, match=f"TIERLINE_VISIBILITY_TIMEOUT_S={value!r}"):
        load_settings({"TIERLINE_VISIBILITY_TIMEOUT_S": value})


def test_a_child_process_environment_gives_back_the_same_settings(tmp_path: Path) -> None:
    settings = load_settings({"TIERLINE_BROKER_URL": "redis://h:6379/1", "HOME": str(tmp_path),
                              "TIERLINE_VISIBILITY_TIMEOUT_S": "20"})
    assert load_settings(settings.child_env()) == settings
    embedded = load_settings({"HOME": str(tmp_path)})
    assert load_settings(embedded.child_env()) == embedded


def test_the_policy_option_is_passed_in_the_settings_not_the_environment(tmp_path: Path) -> None:
    from tierline.cli.main import main

    policy = ROOT / "policies" / "demo.yaml"
    before = dict(os.environ)
    try:
        result = CliRunner().invoke(main, ["--policy", str(policy), "policy", "check",
                                           str(policy)])
        assert result.exit_code == 0, result.output
        assert settings_in_force().policy_path == policy
    finally:
        use_settings(None)
    assert dict(os.environ) == before


def test_no_module_but_the_settings_reads_the_environment() -> None:
    readers = []
    for package in ("tierline",):
        for path in sorted((ROOT / package).rglob("*.py")):
            name = str(path.relative_to(ROOT))
            if name.startswith("tierline/sim/"):  # the simulator stands alone
                continue
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                if (isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv")
                        and isinstance(node.value, ast.Name) and node.value.id == "os"
                        and name not in READERS):
                    readers.append(f"{name}:{node.lineno}")
    assert readers == []
