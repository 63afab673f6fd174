"""The tier engine: the rounds of model calls a tier worker makes for a bundle."""
