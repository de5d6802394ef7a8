"""Bids: day-ahead curves, aFRR capacity and energy bids, congestion offer drafts, and the trader workflow."""
