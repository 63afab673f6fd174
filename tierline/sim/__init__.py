"""Stand-ins for real model APIs: simulated tiers and dataset replay over real HTTP.

Imports only the stdlib, PyYAML, numpy and click; see README.md for how to run it.
"""
