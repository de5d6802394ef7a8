"""Admin audit: who did what, when, to which object (never a secret)."""
