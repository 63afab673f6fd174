"""The latency lanes a producer tags its work with, in order of urgency.

A module of its own so that the command line can name them without loading the policy's
validation (pydantic, YAML).
"""

from __future__ import annotations

LANES = ("realtime", "standard", "batch")
