"""The learned parts of routing: routers, scorers, judges and their training."""
