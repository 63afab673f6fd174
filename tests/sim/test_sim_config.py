"""Fleet building from a policy and sim config; CLI errors are one line, exit code 2."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tierline.sim.fleet import SimConfigError, fleet_from_policy

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "policies" / "demo.yaml"


def test_cheaper_tiers_are_faster_and_less_accurate() -> None:
    fleet = fleet_from_policy(DEMO)
    nano, mid, top = (fleet.models[n] for n in ("sim-nano", "sim-mid", "sim-frontier"))
    assert nano.accuracy < mid.accuracy < top.accuracy
    assert nano.ttft_s < mid.ttft_s < top.ttft_s <= 0.04
    assert fleet.seed == 0


def test_config_overrides_default_then_model_and_seed_argument_wins(tmp_path: Path) -> None:
    config = tmp_path / "sim.yaml"
    config.write_text(
        "seed: 9\ndefault: {error_rate: 0.1}\nmodels: {sim-mid: {ttft_s: 1.5, rpm: 30}}\n"
    )
    fleet = fleet_from_policy(DEMO, config)
    assert fleet.seed == 9
    assert fleet.models["sim-mid"].ttft_s == 1.5 and fleet.models["sim-mid"].rpm == 30
    assert fleet.models["sim-nano"].error_rate == 0.1
    assert fleet_from_policy(DEMO, config, seed=4).seed == 4


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("models: {sim-mid: {ttft: 1}}", "models.sim-mid.ttft"),
        ("models: {sim-mid: {error_rate: 2}}", "models.sim-mid.error_rate"),
        ("models: {ghost: {ttft_s: 1}}", "models.ghost"),
        ("default: {rpm: -1}", "default.rpm"),
        ("seed: abc", "seed"),
        ("colour: red", "colour"),
    ],
)
def test_bad_config_error_names_file_and_key(tmp_path: Path, text: str, key: str) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(text)
    with pytest.raises(SimConfigError) as info:
        fleet_from_policy(DEMO, config)
    assert info.value.key == key
    assert str(info.value).startswith(f"{config}: {key}: ")


def test_policy_without_tiers_is_refused(tmp_path: Path) -> None:
    policy = tmp_path / "p.yaml"
    policy.write_text("models: {}\n")
    with pytest.raises(SimConfigError, match="tiers"):
        fleet_from_policy(policy)


def test_cli_reports_bad_config_in_one_line_with_exit_code_2(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("models: {sim-nano: {accuracy: high}}\n")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tierline.sim",
            "--port",
            "0",
            "--policy",
            str(DEMO),
            "--config",
            str(config),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "models.sim-nano.accuracy" in lines[0]
    assert "Traceback" not in proc.stderr


def test_cli_reports_missing_dataset_with_exit_code_2(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "tierline.sim", "--port", "0", "--replay",
         str(tmp_path / "none.jsonl")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 2 and "none.jsonl" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_cli_stops_cleanly_on_sigint() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tierline.sim", "--port", "0", "--policy", str(DEMO)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith("tierline sim listening on http://127.0.0.1:")
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0 and "Traceback" not in err


def test_sim_imports_only_stdlib_yaml_and_click() -> None:
    code = (
        "import sys, tierline.sim.cli, tierline.sim.loadgen\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in {'tierline', 'httpx', 'pydantic'}"
        " and m != 'tierline' and not m.startswith('tierline.sim')]\n"
        "print(','.join(bad))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == ""
