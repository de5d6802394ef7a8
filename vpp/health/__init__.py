"""Health and metrics endpoints."""
