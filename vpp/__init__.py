"""VPP aggregator for EV flexibility."""

__version__ = "0.1.0"
