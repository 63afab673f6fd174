"""Offline evaluation: strategies and baselines replayed on recorded outcomes."""
