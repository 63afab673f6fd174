"""Celery app, thin tasks, providers, stores and persistence: the doing side."""
