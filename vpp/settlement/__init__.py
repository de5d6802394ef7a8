"""Settlement: what was delivered against what was requested, per pool, ISP, order and session."""
