"""Charging sessions reported by CPOs: their state, their time series of readings, and limits set on them."""
