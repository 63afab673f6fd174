"""When things run: the beat schedule and the scheduled jobs (sweeper, nightly runs, rollups)."""
