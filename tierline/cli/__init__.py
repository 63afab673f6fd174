"""The command line: ``tierline`` and its commands. Nothing imports it."""
