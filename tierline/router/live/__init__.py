"""Live decisions: bands, tiers, deferral, escalation, budgets, health and the guard."""
