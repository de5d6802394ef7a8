"""The HTTP edge: composition root, dependencies, error mapping, authentication."""
