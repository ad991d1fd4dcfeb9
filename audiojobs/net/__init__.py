"""Outbound network: the SSRF guard (urlguard) and the guarded egress proxy every fetch goes through."""
