"""``tierline bench routing --live``: one operating point run two ways, offline over the
recorded outcomes and live through the whole pipeline, and the two compared.

Live means real: a `tierline worker` process on the configured Redis and Postgres, the
simulator replaying the recorded responses (with their recorded token counts) over HTTP,
the trained bundle loaded by the tier worker, the answers graded from what the pipeline
stored. Accuracy and USD must agree with the offline replay within rounding.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from rich.console import Console

from tierline.bench.children import sim_url, spawn, stop
from tierline.router.errors import InvalidInput
from tierline.router.evaluation.dataset import Item, Prices
from tierline.router.evaluation.methods import plan
from tierline.router.evaluation.replay import grade, prepare_replay, run_strategy
from tierline.router.learned.bundle import bundle_of, save_bundle
from tierline.router.learned.training import TrainedRouting, scores_of
from tierline.router.policy import load_policy
from tierline.router.strategies.learned import live_models, policy_strategy
from tierline.router.strategies.steps import Accept

if TYPE_CHECKING:
    from tierline.config.settings import Settings

BUDGET_S = 86_400.0
MAX_OUTPUT_TOKENS = 8_192


@dataclass(frozen=True)
class LiveResult:
    """Both runs of one operating point, per request."""

    label: str
    n: int
    offline_accuracy: float
    offline_usd: float
    live_accuracy: float
    live_usd: float

    @property
    def matches(self) -> bool:
        """Equal accuracy and USD within rounding (6 decimals of a dollar per request)."""
        return (abs(self.offline_accuracy - self.live_accuracy) < 0.5 / max(self.n, 1)
                and abs(self.offline_usd - self.live_usd) < 1e-6)


def policy_for(trained: TrainedRouting, prices: Prices, strategy: Any, bundle_path: Path
               ) -> dict[str, Any]:
    """A policy whose tiers are the strategy's models and whose strategy is the same point."""
    spec = policy_strategy(strategy)
    if spec is None:
        raise InvalidInput("--live-point: only single, cascade, hybrid, value and parallel "
                           "points run live")
    if spec["kind"] != "single":  # the learned kinds step the trained bundle
        spec = {**spec, "options": {**spec["options"], "bundle": str(bundle_path)}}
    return {
        "name": "bench-live",
        "tiers": _tiers(strategy),
        "models": {m: {"provider": "openai", "base_url_env": "TIERLINE_SIM_URL",
                       "usd_per_1m_input": prices[m][0], "usd_per_1m_output": prices[m][1],
                       "max_concurrency": 32} for m in trained.models},
        "lanes": {lane: {"latency_budget_s": BUDGET_S, "max_output_tokens": MAX_OUTPUT_TOKENS}
                  for lane in ("realtime", "standard", "batch")},
        "requests": {"max_prompt_chars": 1_000_000, "max_output_tokens": MAX_OUTPUT_TOKENS},
        "strategy": spec,
        "bundling": {"max_count": 64, "ingress_chunk": 256},
    }


def _tiers(strategy: Any) -> dict[str, list[str]]:
    """One tier per model the strategy climbs; a hybrid's verifiers ride in the last tier
    (the tier worker's step machine reads only each tier's first model)."""
    tiers = {f"t{i}": [m] for i, m in enumerate(live_models(strategy))}
    last = tiers[f"t{len(tiers) - 1}"]
    last += [m for m in getattr(strategy, "verify_with", ()) if m not in last]
    return tiers


def run_live(trained: TrainedRouting, test: Sequence[Item], prices: Prices, label: str,
             replay_file: Path, console: Console, settings: Settings) -> LiveResult:
    """Run ``label``'s strategy offline and live on ``test``, on the servers ``settings``
    name; both per-request figures."""
    points = {p.label: p for p in plan(trained)}
    if label not in points:
        live = [p for p in points if policy_strategy(points[p].strategy) is not None]
        raise InvalidInput(f"--live-point: no point {label!r}; e.g. {', '.join(live[:6])}")
    strategy = points[label].strategy
    bands = ["mid"] * len(test)
    offline = run_strategy(strategy, prepare_replay(trained, test, prices, bands))
    for name, missing in (("TIERLINE_BROKER_URL", settings.embedded),
                          ("TIERLINE_DATABASE_URL", settings.sqlite_path is not None)):
        if missing:
            raise InvalidInput(f"--live needs {name} (Redis and Postgres: the real pipeline)")
    env = settings.child_env()
    with tempfile.TemporaryDirectory(prefix="tierline-live-") as tmp:
        bundle = save_bundle(bundle_of(trained), Path(tmp) / "bundle")[0].with_suffix("")
        policy_path = Path(tmp) / "policy.yaml"
        policy_path.write_text(yaml.safe_dump(policy_for(trained, prices, strategy, bundle)))
        zero = Path(tmp) / "zero.yaml"
        zero.write_text("default: {ttft_s: 0, per_token_s: 0, jitter_s: 0, cold_start_s: 0}\n")
        env["TIERLINE_POLICY"] = str(policy_path)
        sim = spawn([sys.executable, "-m", "tierline.sim", "--replay", str(replay_file), "--config",
                     str(zero), "--port", "0"], env, Path(tmp) / "sim.log")
        worker = None
        try:
            env["TIERLINE_SIM_URL"] = sim_url(Path(tmp) / "sim.log", sim, timeout_s=60)
            subprocess.run([sys.executable, "-m", "tierline", "db", "upgrade"], env=env,
                           check=True, capture_output=True)
            worker = spawn([sys.executable, "-m", "tierline", "worker", "--role", "all",
                            "--pool", "threads", "-c", "8", "--", "-n", "bench-live@%h",
                            "--without-mingle", "--without-gossip"], env,
                           Path(tmp) / "worker.log")
            accuracy, usd = _submit_and_grade(trained, test, policy_path, env, console)
        finally:
            for proc in (worker, sim):
                if proc is not None:
                    stop(proc)
    return LiveResult(label, len(test), offline.accuracy, offline.usd_per_request, accuracy,
                      usd)


def _submit_and_grade(trained: TrainedRouting, test: Sequence[Item], policy_path: Path,
                      env: dict[str, str], console: Console) -> tuple[float, float]:
    from tierline.config.settings import load_settings
    from tierline.producer.client import Client
    from tierline.workers.app import app
    from tierline.workers.runtime import Runtime, install

    rt = Runtime(load_settings(env), load_policy(policy_path))  # the workers' settings
    install(rt)
    app.conf.broker_url = rt.settings.broker_url
    client = Client(rt)
    by_id = {f"live-{time.time_ns()}-{i}": item for i, item in enumerate(test)}
    report = client.submit_many([{"prompt": item.prompt, "id": key, "lane": "batch",
                                  "max_output_tokens": MAX_OUTPUT_TOKENS}
                                 for key, item in by_id.items()], job="bench-live")
    if report.rejected or report.accepted != len(test):
        raise InvalidInput(f"live: {report.rejected} prompts rejected, "
                           f"{report.accepted} of {len(test)} accepted")
    with console.status(f"live: {len(test)} requests through the pipeline"):
        status = client.wait(report.job_id, timeout_s=1800)
    if status.by_status.get("done", 0) != len(test):
        raise InvalidInput(f"live: the job ended {status.state} with {status.by_status}")
    scores = scores_of(list(by_id.values()), trained.models)
    position = {key: i for i, key in enumerate(by_id)}
    correct, usd = 0.0, Decimal(0)
    for row in client.results(report.job_id):
        detail = row["detail"] or {}
        accept = Accept(row["model"], detail.get("answer"), detail.get("confidence", 0.0),
                        bool(detail.get("aggregate")))
        correct += grade(by_id[row["key"]], scores[position[row["key"]]], trained.models, accept)
        usd += Decimal(row["usd"])
    return correct / len(test), float(usd) / len(test)


