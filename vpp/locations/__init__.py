"""Charging locations of CPOs: EVSEs, their capabilities and their connectors' power."""
