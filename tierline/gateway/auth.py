"""Who is calling: an ``Authorization: Bearer <key>`` header turned into a tenant and its limits.

Keys come from the YAML keys file (:mod:`tierline.gateway.keys_file`) and from the database
(``tierline keys create``, :mod:`tierline.record.api_keys`); either may be absent. With neither, the
gateway is open and every caller is tenant ``default``. A key is looked up by its SHA-256
digest; database keys are cached for ``Limits.key_cache_s`` so a busy gateway does not read the key
table per request (a revocation takes effect within that time).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from tierline.gateway.errors import unauthorized
from tierline.gateway.keys_file import Keys, digest
from tierline.record.api_keys import KeyRecord

CACHE_S = 10.0
OPEN = None  # an open gateway's tenant: the Client's default


@dataclass(frozen=True)
class Identity:
    """A caller: its tenant (None on an open gateway) and the key's record, if a database key."""

    tenant: str | None
    key: KeyRecord | None = None


class Authenticator:
    """Checks keys against the YAML file and the database's key table (see the module doc)."""

    def __init__(self, keys: Keys | None = None,
                 lookup: Callable[[str], KeyRecord | None] | None = None,
                 any_keys: Callable[[], bool] | None = None,
                 clock: Callable[[], float] = time.monotonic, cache_s: float = CACHE_S) -> None:
        self.keys = keys
        self.cache_s = cache_s
        self.lookup = lookup
        self.any_keys = any_keys
        self.clock = clock
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[float, KeyRecord | None]] = {}
        self._open: tuple[float, bool] | None = None

    def identify(self, authorization: str | None) -> Identity:
        """The caller's identity; 401 for a missing or wrong key when keys are in use."""
        if self._is_open():
            return Identity(OPEN)
        scheme, _, key = (authorization or "").strip().partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise unauthorized(bool(authorization))
        hashed = digest(key.strip())
        if self.keys is not None and (tenant := self.keys.tenants.get(hashed)):
            return Identity(tenant)
        record = self._record(hashed)
        if record is None or not record.usable(time.time()):
            raise unauthorized(True)
        return Identity(record.tenant, record)

    def known(self, authorization: str | None) -> Identity | None:
        """The caller's identity when it needs no database read (the keys file, or what is
        cached), else None: the guard then calls :meth:`identify` on a thread."""
        now = self.clock()
        with self._lock:
            is_open = (self.keys is None and self._open is not None
                       and now - self._open[0] < self.cache_s and self._open[1])
        if is_open or (self.keys is None and self.any_keys is None):
            return Identity(OPEN)
        scheme, _, key = (authorization or "").strip().partition(" ")
        if self.keys is not None and scheme.lower() == "bearer" and key.strip():
            tenant = self.keys.tenants.get(digest(key.strip()))
            if tenant is not None:
                return Identity(tenant)
        return None

    def _is_open(self) -> bool:
        if self.keys is not None:
            return False
        if self.any_keys is None:
            return True
        now = self.clock()
        with self._lock:
            if self._open is not None and now - self._open[0] < self.cache_s:
                return self._open[1]
        is_open = not self.any_keys()
        with self._lock:
            self._open = (now, is_open)
        return is_open

    def _record(self, hashed: str) -> KeyRecord | None:
        if self.lookup is None:
            return None
        now = self.clock()
        with self._lock:
            cached = self._cache.get(hashed)
            if cached is not None and now - cached[0] < self.cache_s:
                return cached[1]
        record = self.lookup(hashed)
        with self._lock:
            if len(self._cache) > 10_000:  # wrong keys must not grow it without bound
                self._cache.clear()
            self._cache[hashed] = (now, record)
        return record
