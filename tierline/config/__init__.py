"""What tierline runs with: settings read once from the environment, and the lease they set."""
