"""The ``tierline sim`` command: serve a simulated fleet or a replayed dataset until stopped."""

from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

import click

from tierline.sim.fleet import Fleet, SimConfigError, fleet_for_models, fleet_from_policy
from tierline.sim.replay import ReplayIndex, load_replay
from tierline.sim.server import start
from tierline.sim.synthetic import load_gold

# The demo policy beside this package (installed with it), so the default works from any folder.
DEFAULT_POLICY = str(Path(__file__).resolve().parents[2] / "policies" / "demo.yaml")


def build(
    policy: str | None, config: str | None, replay_path: str | None, seed: int | None
) -> tuple[Fleet, ReplayIndex | None]:
    """The fleet to serve, and the replay index in replay mode."""
    policy_path = policy or os.environ.get("TIERLINE_POLICY")
    if replay_path is None:
        return fleet_from_policy(policy_path or DEFAULT_POLICY, config, seed), None
    index = load_replay(replay_path)
    if policy_path is None and not Path(DEFAULT_POLICY).exists():
        policy_path = None  # replay needs no policy; use it only when there is one
    else:
        policy_path = policy_path or DEFAULT_POLICY
    return fleet_for_models(index.models, policy_path, config, seed), index


@click.command("sim")
@click.option(
    "--policy",
    type=click.Path(dir_okay=False),
    default=None,
    help="Policy YAML naming the models (default: $TIERLINE_POLICY or the demo policy "
    "shipped with tierline).",
)
@click.option(
    "--config",
    type=click.Path(dir_okay=False),
    default=None,
    help="Sim config YAML overriding model profiles.",
)
@click.option(
    "--replay",
    "replay_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Serve recorded responses of a routing dataset (JSONL).",
)
@click.option(
    "--gold",
    type=click.Path(dir_okay=False),
    default=None,
    help="Gold labels for classification prompts (CSV text,label or JSONL).",
)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8700, show_default=True, help="0 picks a free port.")
@click.option(
    "--seed",
    type=int,
    default=None,
    help="Seed of every random choice (default: the config's, else 0).",
)
def command(
    policy: str | None,
    config: str | None,
    replay_path: str | None,
    gold: str | None,
    host: str,
    port: int,
    seed: int | None,
) -> None:
    """Serve simulated models over OpenAI- and Anthropic-compatible HTTP until stopped."""
    try:
        fleet, index = build(policy, config, replay_path, seed)
        gold_map = load_gold(gold) if gold else None
        server = start(fleet, host, port, replay=index, gold=gold_map)
    except SimConfigError as exc:
        click.echo(f"tierline sim: error: {exc}", err=True)
        sys.exit(2)
    except OSError as exc:
        click.echo(f"tierline sim: error: cannot listen on {host}:{port}: {exc.strerror}", err=True)
        sys.exit(2)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    mode = f"replay of {index.source}" if index else "synthetic"
    click.echo(f"tierline sim: {mode}, models: {', '.join(server.engine.model_names)}", err=True)
    click.echo(f"tierline sim listening on {server.url}")
    sys.stdout.flush()
    while not stop.wait(0.5):
        pass
    server.close()
    click.echo("tierline sim: stopped", err=True)
