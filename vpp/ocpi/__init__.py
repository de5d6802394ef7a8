"""OCPI connections: the CPO platforms we exchange data with, their tokens, roles, endpoints and quirks."""
