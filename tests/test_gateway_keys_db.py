"""Keys in the database: made with `tierline keys create`, kept as hashes, with limits."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from tests.conftest import ROOT, redis_or_skip, serve_gateway
from tierline.config.settings import POLICY_DIR
from tierline.gateway import DEFAULT_LIMITS
from tierline.gateway.auth import Identity
from tierline.gateway.keys_file import load_keys
from tierline.gateway.quota import Quota
from tierline.producer.client import Client
from tierline.producer.embedded import embedded
from tierline.record import api_keys
from tierline.record.schema import api_keys as api_keys_table
from tierline.record.schema import charges
from tierline.workers.stores.request_counter import RedisCounter

HELLO = {"model": "auto", "messages": [{"role": "user", "content": "What is 2 + 2?"}]}
FRESH = dataclasses.replace(DEFAULT_LIMITS, key_cache_s=0.0, spent_cache_s=0.0)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    database = tmp_path_factory.mktemp("keys") / "t.sqlite"
    with embedded(POLICY_DIR / "demo.yaml", database=database) as rt:
        yield Client(rt)


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_a_database_key_speaks_for_its_tenant_and_only_its_hash_is_kept(
        stack: Client, tmp_path: Path) -> None:
    key, record = api_keys.create_key(stack.rt.engine, "initech", name="web")
    yaml_keys = tmp_path / "keys.yaml"
    yaml_keys.write_text("acme: [sk-acme-0001]\n")
    with serve_gateway(stack, limits=FRESH, keys=load_keys(yaml_keys)) as base:
        answer = httpx.post(f"{base}/chat/completions", json=HELLO, headers=_bearer(key),
                            timeout=30)
        assert answer.status_code == 200, answer.text
        assert httpx.get(f"{base}/models", headers=_bearer("sk-acme-0001")).status_code == 200
        refused = httpx.get(f"{base}/models", headers=_bearer(key + "x"))
        assert refused.status_code == 401 and "a wrong API key" in refused.text
        api_keys.revoke_key(stack.rt.engine, record.id)
        assert httpx.get(f"{base}/models", headers=_bearer(key)).status_code == 401
    with stack.rt.engine.connect() as conn:
        stored = [tuple(row) for row in conn.execute(select(api_keys_table))]
        tenants = set(conn.execute(select(charges.c.tenant).where(
            charges.c.request_id == answer.json()["tierline"]["request_id"])).scalars())
    assert tenants == {"initech"}
    assert not any(key in str(value) for row in stored for value in row)


def test_once_a_key_exists_callers_without_one_are_refused(stack: Client) -> None:
    api_keys.create_key(stack.rt.engine, "someone")
    with serve_gateway(stack, limits=FRESH) as base:
        assert httpx.get(f"{base}/models").status_code == 401
        assert httpx.get(f"{base}/../healthz").status_code == 200


def test_an_expired_key_is_refused(stack: Client) -> None:
    key, _ = api_keys.create_key(stack.rt.engine, "late", expires_at=time.time() - 1)
    with serve_gateway(stack, limits=FRESH) as base:
        assert httpx.get(f"{base}/models", headers=_bearer(key)).status_code == 401


def test_requests_over_a_keys_rate_are_429_with_retry_after(stack: Client) -> None:
    key, _ = api_keys.create_key(stack.rt.engine, "busy", requests_per_minute=2)
    with serve_gateway(stack, limits=FRESH) as base, httpx.Client() as http:
        statuses = [http.get(f"{base}/models", headers=_bearer(key)) for _ in range(5)]
    refused = [r for r in statuses if r.status_code == 429]
    assert refused and {r.status_code for r in statuses} == {200, 429}
    assert 1 <= int(refused[0].headers["retry-after"]) <= 60
    assert "requests per minute" in refused[0].json()["error"]["message"]


def _asked_twice(stack: Client, key: str) -> tuple[httpx.Response, httpx.Response]:
    """One chat call that must be answered, then a second one with the same key."""
    with serve_gateway(stack, limits=FRESH) as base:
        first = httpx.post(f"{base}/chat/completions", json=HELLO, headers=_bearer(key),
                           timeout=30)
        assert first.status_code == 200, first.text
        second = httpx.post(f"{base}/chat/completions", json=HELLO, headers=_bearer(key),
                            timeout=30)
    return first, second


def test_a_tenant_over_its_daily_budget_is_refused_before_its_work_is_accepted(
        stack: Client) -> None:
    key, _ = api_keys.create_key(stack.rt.engine, "thrifty", usd_per_day=Decimal("0.0000000001"))
    first, second = _asked_twice(stack, key)
    assert second.status_code == 429
    assert second.json()["error"]["code"] == "insufficient_quota"
    assert api_keys.spent_usd(stack.rt.engine, "thrifty", 0.0) == Decimal(
        first.json()["tierline"]["usd"])


def test_requests_per_minute_are_counted_across_gateway_processes(redis_url: str) -> None:
    client = redis_or_skip(redis_url)
    key = api_keys.KeyRecord(f"key-shared-{time.time_ns()}", "shared", None, 0.0, None, None,
                             3, None, None)
    gateways = [Quota(RedisCounter(client), lambda tenant, since: Decimal(0))
                for _ in range(2)]
    admitted = 0
    for number in range(6):
        try:
            gateways[number % 2].admit(Identity("shared", key))
            admitted += 1
        except Exception as exc:
            assert getattr(exc, "status", None) == 429
    assert admitted in (3, 4, 5)  # 3 in one minute; a minute may turn between the calls
    assert admitted < 6


def test_the_keys_command_prints_a_key_once_lists_and_revokes_it(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items()
           if k not in ("TIERLINE_BROKER_URL", "TIERLINE_DATABASE_URL")}
    env.update(TIERLINE_POLICY=str(POLICY_DIR / "demo.yaml"), PYTHONPATH=str(ROOT))

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "tierline", "keys", *args], cwd=tmp_path,
                              env=env, capture_output=True, text=True, timeout=120)

    made = run("create", "--tenant", "acme", "--name", "ci", "--expires", "30d", "--rpm", "60")
    assert made.returncode == 0, made.stderr
    key = made.stdout.split()[0]
    key_id = made.stdout.split("key ")[1].split()[0]
    assert key.startswith("tl-") and len(key) > 40
    listed = run("list")
    assert key_id in listed.stdout and key not in listed.stdout and "active" in listed.stdout
    assert run("revoke", key_id).returncode == 0
    assert "revoked" in run("list").stdout
    unknown = run("revoke", "key-nope")
    assert unknown.returncode == 2 and "no key 'key-nope'" in unknown.stderr
    past = run("create", "--tenant", "acme", "--expires", "2001-01-01")
    assert past.returncode == 2 and "in the past" in past.stderr
    limited = run("limit", "--tenant", "acme", "--rpm", "5", "--usd-per-day", "1.5")
    assert limited.returncode == 0, limited.stderr
    assert "tenant acme: req/min 5, usd/day 1.5" in limited.stdout
    assert [line.split()[:4] for line in run("limits").stdout.splitlines()[1:]] == [
        ["acme", "5", "1.5000000000", "-"]]
    charged = subprocess.run([sys.executable, "-m", "tierline", "charges", "--by", "tenant"],
                             cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert charged.returncode == 0, charged.stderr
    shown = charged.stdout.split("tenants' own limits")[1].splitlines()
    assert [line.split()[:4] for line in shown[2:]] == [["acme", "5", "1.5000000000", "-"]]
    assert run("limit", "--tenant", "acme").returncode == 0  # no limit given: none left
    assert run("limits").stdout.splitlines()[1:] == []


def test_a_tenants_rate_bounds_all_its_keys_together(stack: Client, tmp_path: Path) -> None:
    first, _ = api_keys.create_key(stack.rt.engine, "pair")
    second, _ = api_keys.create_key(stack.rt.engine, "pair")
    other, _ = api_keys.create_key(stack.rt.engine, "unlimited")
    yaml_keys = tmp_path / "keys.yaml"
    yaml_keys.write_text("pair: [sk-pair-0001]\n")
    api_keys.set_tenant_limits(stack.rt.engine, api_keys.TenantLimits("pair", 3, None, None))
    with serve_gateway(stack, limits=FRESH, keys=load_keys(yaml_keys)) as base, \
            httpx.Client() as http:
        statuses = [http.get(f"{base}/models", headers=_bearer(key))
                    for key in (first, second, "sk-pair-0001") * 2]
        others = [http.get(f"{base}/models", headers=_bearer(other)).status_code
                  for _ in range(6)]
    refused = [r for r in statuses if r.status_code == 429]
    assert [r.status_code for r in statuses[:3]] == [200, 200, 200]
    assert len(refused) == 3 or len(refused) == 2  # 3 a minute; a minute may turn meanwhile
    assert "tenant pair: over its 3 requests per minute" in refused[0].json()["error"]["message"]
    assert 1 <= int(refused[0].headers["retry-after"]) <= 60
    assert others == [200] * 6


def test_a_tenants_budget_refuses_its_keys_that_have_none(stack: Client) -> None:
    key, _ = api_keys.create_key(stack.rt.engine, "frugal")
    api_keys.set_tenant_limits(stack.rt.engine, api_keys.TenantLimits(
        "frugal", None, Decimal("0.0000000001"), None))
    first, second = _asked_twice(stack, key)
    assert second.status_code == 429
    assert second.json()["error"]["code"] == "insufficient_quota"
    assert "tenant frugal: its budget of" in second.json()["error"]["message"]
    api_keys.set_tenant_limits(stack.rt.engine, api_keys.TenantLimits("frugal", None, None, None))
    assert "frugal" not in api_keys.all_tenant_limits(stack.rt.engine)


def test_tenants_limits_are_read_once_per_cache_period_not_per_request() -> None:
    now = [1_000.0]
    reads: list[float] = []

    def limited_tenants() -> dict[str, api_keys.TenantLimits]:
        reads.append(now[0])
        return {"capped": api_keys.TenantLimits("capped", 100, None, None)}

    from tierline.workers.stores.request_counter import MemoryCounter

    quota = Quota(MemoryCounter(), lambda tenant, since: Decimal(0), clock=lambda: now[0],
                  cache_s=5.0, tenant_limits=limited_tenants)
    free, capped = Identity("free"), Identity("capped")
    assert quota.limited(free)  # nothing read yet: the admit that follows reads
    quota.admit(free)
    assert not quota.limited(free) and quota.limited(capped)
    quota.admit(capped)
    assert reads == [1_000.0]
    now[0] += 5.0
    assert quota.limited(free)
    quota.admit(free)
    assert reads == [1_000.0, 1_005.0]
    assert not quota.limited(Identity(None))  # an open gateway's callers have no tenant
