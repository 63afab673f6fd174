"""Versioned bundles: one promoted at a time, promote retires it, rollback restores the one
before; the CLI lists them and says why it cannot roll back."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tierline.record.bundles import listed, promote_bundle, promoted, register, rollback
from tierline.record.db import engine_for, upgrade
from tierline.router.errors import InvalidInput

ROOT = Path(__file__).resolve().parents[2]
POLICY = {"tiers": {"t0": ["a"], "t1": ["b"]}, "strategy": {"kind": "cascade"}}


def test_promote_retires_and_rollback_restores_the_one_before(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'b.sqlite'}"
    upgrade(url)
    with engine_for(url).begin() as conn:
        first = register(conn, "/b/1", POLICY, "cascade-2 bar=0.8", {"records": 100}, 10.0,
                         promote=True)
        second = register(conn, "/b/2", POLICY, "value-2$ δ=0.3", {"records": 200}, 20.0)
        assert promoted(conn)["id"] == first  # type: ignore[index]
        promote_bundle(conn, second, 30.0)
        assert promoted(conn)["id"] == second  # type: ignore[index]
        assert {r["id"]: r["status"] for r in listed(conn)} == {first: "retired",
                                                                 second: "promoted"}
        assert rollback(conn, 40.0)["id"] == first
        assert promoted(conn)["id"] == first  # type: ignore[index]
        with pytest.raises(InvalidInput, match="first ever promoted"):
            rollback(conn, 50.0)
        with pytest.raises(InvalidInput, match="no bundle 'nope'"):
            promote_bundle(conn, "nope", 60.0)


def test_the_cli_lists_and_refuses_a_rollback_with_nothing_promoted(tmp_path: Path) -> None:
    env = {**os.environ, "TIERLINE_DATABASE_URL": f"sqlite:///{tmp_path / 'c.sqlite'}"}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "tierline", "router", "bundles", *args],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)

    assert "no bundles yet" in run("list").stdout
    refused = run("rollback")
    assert refused.returncode == 2 and "nothing to roll back" in refused.stderr
    assert "Traceback" not in refused.stderr
