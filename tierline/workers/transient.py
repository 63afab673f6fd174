"""Which errors are a fault of the moment, not of the work: the database or the broker away.

A task that meets one is retried with backoff (tierline.workers.tasks), never acknowledged and
dropped; anything else is a bug or bad data, and retrying it would loop.
"""

from __future__ import annotations

import kombu.exceptions
import redis.exceptions
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

# What to catch; :func:`transient` then says whether the error really is one of the moment.
TRANSIENT_DB_ERRORS = (DBAPIError,)
TRANSIENT_ERRORS = (DBAPIError, redis.exceptions.RedisError, kombu.exceptions.OperationalError,
                    ConnectionError, TimeoutError)


def transient(error: BaseException) -> bool:
    """Whether ``error`` comes from a connection problem (the database, Redis or the broker
    refusing, dropping or timing out), so the same work may succeed later."""
    if isinstance(error, (OperationalError, InterfaceError)):
        return True
    if isinstance(error, DBAPIError):  # e.g. a connection dropped mid-statement
        return bool(error.connection_invalidated)
    if isinstance(error, (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError,
                          redis.exceptions.BusyLoadingError)):
        return True
    if isinstance(error, redis.exceptions.ResponseError):  # e.g. a restarted Redis
        return "LOADING" in str(error) or "READONLY" in str(error)
    return isinstance(error, (kombu.exceptions.OperationalError, ConnectionError, TimeoutError))
