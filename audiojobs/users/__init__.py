"""Users and their API keys (multi-user mode)."""
