"""Charge detail records: the CPO's final, immutable account of a session, for settlement."""
