"""The pure core of tierline: envelopes, policy, estimators, strategies, absorber math.

Nothing here performs I/O or imports Celery, kombu, httpx, SQLAlchemy or Redis, nor any
other layer of tierline; the import contract in ``.importlinter`` checks it.
"""
