"""API keys for the HTTP gateway: each key names the tenant its requests are made for.

The keys file is YAML, a tenant to its keys::

    acme: [sk-acme-1, "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"]
    globex: [sk-globex]

A key may be written as ``sha256:<hex digest>`` so the file need not hold it in the clear.
Keys are compared by their SHA-256 digests, so the lookup takes the same time whichever key
is presented. A tenant's requests, charges, token budgets and idempotency keys are its own.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml

from tierline.router.errors import InvalidInput

_DIGEST = re.compile(r"sha256:([0-9a-fA-F]{64})")


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True)
class Keys:
    """The tenant of each accepted key, by the key's SHA-256 digest."""

    tenants: Mapping[str, str]

    def tenant_of(self, authorization: str | None) -> str | None:
        """The tenant an ``Authorization: Bearer <key>`` header speaks for, or None."""
        scheme, _, key = (authorization or "").strip().partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            return None
        return self.tenants.get(digest(key.strip()))


def load_keys(path: Path) -> Keys:
    """Read a keys file; raises InvalidInput naming the file and what is wrong."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InvalidInput(f"{path}: cannot read the keys file: {exc.strerror}") from exc
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict) or not data:
        raise InvalidInput(f"{path}: must map each tenant to a list of keys, "
                           "e.g. {acme: [sk-acme-1]}")
    tenants: dict[str, str] = {}
    for tenant, keys in data.items():
        if not isinstance(tenant, str) or not tenant.strip():
            raise InvalidInput(f"{path}: tenant {tenant!r} must be a non-empty string")
        if not isinstance(keys, list) or not keys:
            raise InvalidInput(f"{path}: tenant {tenant!r}: give a non-empty list of keys")
        for key in keys:
            if not isinstance(key, str) or len(key.strip()) < 8 or key != key.strip():
                raise InvalidInput(f"{path}: tenant {tenant!r}: a key must be a string of at "
                                   "least 8 characters without surrounding spaces")
            hashed = _DIGEST.fullmatch(key)
            value = hashed.group(1).lower() if hashed else digest(key)
            if tenants.setdefault(value, tenant) != tenant:
                raise InvalidInput(f"{path}: the same key is listed for tenants "
                                   f"{tenants[value]!r} and {tenant!r}")
    return Keys(tenants)
