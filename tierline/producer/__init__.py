"""The producer side: the Python API, job specs, batch intake, classification jobs."""
