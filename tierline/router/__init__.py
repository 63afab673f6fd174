"""The pure core of tierline: envelopes, policy, estimators, strategies, absorber math.

Nothing here performs I/O or imports Celery, kombu, httpx, SQLAlchemy or Redis;
``tests/router/test_purity.py`` checks it.
"""
