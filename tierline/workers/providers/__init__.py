"""Model providers over httpx: one shared client, errors mapped once, retries and fan-out."""

from tierline.workers.providers.base import (
    Completion,
    ModelCall,
    Provider,
    TextStream,
    estimate_tokens,
)
from tierline.workers.providers.client import close_shared_client, shared_client
from tierline.workers.providers.fanout import Reply, run_calls
from tierline.workers.providers.registry import PROVIDERS, provider_for, providers_for
from tierline.workers.providers.retry import call_with_retries

__all__ = [
    "PROVIDERS",
    "ModelCall",
    "Completion",
    "Reply",
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
