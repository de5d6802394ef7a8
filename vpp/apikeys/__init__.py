"""API keys: creation, verification by hash, revocation."""
