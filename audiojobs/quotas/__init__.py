"""Fair shares: tiers, per-user concurrency slots, daily minutes."""
