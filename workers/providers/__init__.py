"""Model providers over httpx: one shared client, errors mapped once, retries and fan-out."""

from workers.providers.base import Call, Completion, Provider, TextStream, estimate_tokens
from workers.providers.client import close_shared_client, shared_client
from workers.providers.fanout import Outcome, run_calls
from workers.providers.registry import PROVIDERS, provider_for, providers_for
from workers.providers.retry import call_with_retries

__all__ = [
    "PROVIDERS",
    "Call",
    "Completion",
    "Outcome",
    "Provider",
    "TextStream",
    "call_with_retries",
    "close_shared_client",
    "estimate_tokens",
    "provider_for",
    "providers_for",
    "run_calls",
    "shared_client",
]
