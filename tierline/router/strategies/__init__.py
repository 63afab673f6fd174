"""Routing strategies as pure step machines, the same offline and live."""
