"""Congestion management: the UFTP participants, messages, offers, orders and settlements (AGR role)."""
