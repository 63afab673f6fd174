"""Which class speaks each policy ``provider`` kind, and how a ``ModelSpec`` becomes a
ready provider: endpoint and key read from the environment variables the policy names."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

import httpx

from tierline.router.errors import PolicyError
from tierline.router.policy import ModelSpec
from tierline.workers.providers.anthropic import AnthropicProvider
from tierline.workers.providers.base import Provider
from tierline.workers.providers.instant import InstantProvider
from tierline.workers.providers.openai import OpenAIProvider


class ProviderClass(Protocol):
    """What the registry holds: a provider class with the uniform constructor."""

    needs_base_url: bool

    def __call__(
        self, *, base_url: str | None, api_key: str | None, client: httpx.Client
    ) -> Provider: ...


# Keyed by the policy's `provider`; OpenAI-compatible servers all use "openai".
PROVIDERS: dict[str, ProviderClass] = {
    "openai": OpenAIProvider,
    "anthropic": AnthropicProvider,
    "instant": InstantProvider,
}

_SOURCE = "environment"  # errors here are about the deployment's variables, not the YAML text


def provider_for(
    spec: ModelSpec, *, client: httpx.Client, env: Mapping[str, str], model_key: str | None = None
) -> Provider:
    """The provider for ``spec``; a PolicyError names the missing variable or unknown kind."""
    where = f"models.{model_key or spec.name or '?'}"
    cls = PROVIDERS.get(spec.provider)
    if cls is None:
        known = ", ".join(sorted(PROVIDERS))
        reason = f"unknown provider {spec.provider!r} (known: {known})"
        raise PolicyError(_SOURCE, f"{where}.provider", reason)
    base_url = base_url_for(spec, env=env, where=where) if cls.needs_base_url else None
    api_key = None
    if spec.api_key_env:
        api_key = env.get(spec.api_key_env)
        if not api_key:
            reason = f"environment variable {spec.api_key_env} is not set"
            raise PolicyError(_SOURCE, f"{where}.api_key_env", reason)
    return cls(base_url=base_url, api_key=api_key, client=client)


def providers_for(
    models: Mapping[str, ModelSpec], *, client: httpx.Client, env: Mapping[str, str]
) -> dict[str, Provider]:
    """A provider per API model name (``spec.name`` or the policy key): ``run_calls``'s map.

    Two policy entries sending the same API name must agree on provider and endpoint,
    since calls carry only the API name.
    """
    providers: dict[str, Provider] = {}
    seen: dict[str, tuple[str, str | None, str | None]] = {}
    for key, spec in models.items():
        api_name = spec.name or key
        route = (spec.provider, spec.base_url_env, spec.base_url)
        if seen.setdefault(api_name, route) != route:
            reason = f"API name {api_name!r} is served by two different endpoints"
            raise PolicyError(_SOURCE, f"models.{key}.name", reason)
        providers.setdefault(api_name, provider_for(spec, client=client, env=env, model_key=key))
    return providers


def base_url_for(spec: ModelSpec, *, env: Mapping[str, str], where: str = "models.?") -> str:
    """``env[spec.base_url_env]`` when set, else ``spec.base_url``, else a PolicyError."""
    if spec.base_url_env and env.get(spec.base_url_env):
        return env[spec.base_url_env]
    if spec.base_url:
        return spec.base_url
    if spec.base_url_env:
        reason = f"environment variable {spec.base_url_env} is not set and there is no base_url"
        raise PolicyError(_SOURCE, f"{where}.base_url_env", reason)
    raise PolicyError(_SOURCE, where, "neither base_url_env nor base_url is set")
