"""The benches of routing and learning that ``tierline bench`` runs."""
