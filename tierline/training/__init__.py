"""Training routing bundles from recorded outcomes and from shadowed traffic."""
