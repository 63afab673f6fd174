"""The record: the schema in Postgres (SQLite embedded) and every query of it."""
